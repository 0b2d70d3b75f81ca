package policy

import "testing"

// The benchmarks evaluate one request against policies of growing weight;
// BenchmarkEvaluateDefault (one statement, no conditions) is the baseline
// the others are read against.

func benchEvaluate(b *testing.B, doc string, r *Request, want Decision) {
	p, err := Parse(doc)
	if err != nil {
		b.Fatal(err)
	}
	if got := p.Evaluate(r); got != want {
		b.Fatalf("Evaluate = %v, want %v", got, want)
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if p.Evaluate(r) != want {
				b.Error("decision changed")
				return
			}
		}
	})
}

func BenchmarkEvaluateDefault(b *testing.B) {
	benchEvaluate(b, DefaultKeyPolicy(acct), &Request{Principal: root, Action: "kms:Decrypt", Resource: keyARN}, Allow)
}

// The console policy's last statement decides: every statement is visited.
func BenchmarkEvaluateConsole(b *testing.B) {
	benchEvaluate(b, guideConsolePolicy, &Request{Principal: session("ExampleUserRole", "app"), Action: "kms:CreateGrant", Resource: keyARN,
		Context: ctx{"kms:grantisforawsresource": {"true"}}}, Allow)
}

func BenchmarkEvaluateConditions(b *testing.B) {
	doc := wrap(`{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111122223333:role/App"},"Action":["kms:Encrypt","kms:Decrypt","kms:GenerateDataKey*"],"Resource":"*",
 "Condition":{"StringEquals":{"kms:EncryptionContext:AppName":"ExampleApp","kms:CallerAccount":"111122223333"},
 "ForAllValues:StringEquals":{"kms:EncryptionContextKeys":["AppName","Stage"]},"IpAddress":{"aws:SourceIp":["10.0.0.0/8","192.0.2.0/24"]}}}`,
		`{"Effect":"Deny","Principal":"*","Action":"kms:*","Resource":"*","Condition":{"StringEquals":{"kms:EncryptionContext:Stage":"Restricted"}}}`)
	benchEvaluate(b, doc, &Request{Principal: session("App", "i-1234"), Action: "kms:GenerateDataKey", Resource: keyARN, Context: ctx{
		"kms:encryptioncontext:appname": {"ExampleApp"}, "kms:encryptioncontext:stage": {"Test"}, "kms:encryptioncontextkeys": {"AppName", "Stage"},
		"kms:calleraccount": {acct}, "aws:sourceip": {"192.0.2.44"},
	}}, Allow)
}

func BenchmarkParseConsole(b *testing.B) {
	b.ReportAllocs()
	b.SetBytes(int64(len(guideConsolePolicy)))
	for b.Loop() {
		if _, err := Parse(guideConsolePolicy); err != nil {
			b.Fatal(err)
		}
	}
}
