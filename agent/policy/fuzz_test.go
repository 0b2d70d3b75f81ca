package policy

import (
	"errors"
	"strings"
	"testing"
)

// FuzzParse feeds documents to Parse and ParseIdentity: they must never
// panic, must fail only with *Error, and Check on any parsed policy must
// never panic, for fixed requests and for one built from the second input.
func FuzzParse(f *testing.F) {
	seeds := []string{
		guideConsolePolicy,
		DefaultKeyPolicy(acct),
		wrap(okStmt),
		`{"Statement":{"Effect":"Deny","NotPrincipal":{"AWS":["111122223333","arn:aws:sts::111122223333:assumed-role/R/s"]},"NotAction":"kms:Describe*","NotResource":"arn:aws:kms:*:*:key/${aws:username}"}}`,
		wrap(`{"Effect":"Allow","Principal":{"Service":"cloudtrail.amazonaws.com"},"Action":"kms:*","Resource":"*","Condition":{` +
			`"ForAllValues:StringLike":{"kms:ResourceAliases":"alias/*Test?"},"ForAnyValue:StringNotEqualsIfExists":{"kms:EncryptionContextKeys":["a","${aws:username, 'x'}"]},` +
			`"IpAddress":{"aws:SourceIp":["10.0.0.0/8","2001:db8::/32","::ffff:1.2.3.4/120"]},"NumericLessThan":{"n":[1,2.5]},"DateGreaterThan":{"aws:CurrentTime":["2020-01-01","1700000000"]},` +
			`"ArnLike":{"aws:SourceArn":"arn:aws:s3:::${aws:username}*"},"Null":{"kms:BypassPolicyLockoutSafetyCheck":true},"Bool":{"b":false},"BinaryEquals":{"x":"QQ=="}}}`),
		`{"Version":"2012-10-17","Statement":[]}`,
		`{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":"*","Action":"kms:*","Resource":"*","Condition":{"StringLike":{"k":"${*}${?}${$}${"}}}]}`,
		"{\"Statement\":[\"\\u0000\"]}",
	}
	for _, s := range seeds {
		f.Add(s, "arn:aws:sts::111122223333:assumed-role/R/s")
	}
	f.Add("{", "")
	f.Fuzz(func(t *testing.T, doc, val string) {
		for _, parse := range []func(string) (*Policy, error){Parse, ParseIdentity} {
			p, err := parse(doc)
			if err != nil {
				var pe *Error
				if p != nil || !errors.As(err, &pe) || pe.Message == "" {
					t.Fatalf("Parse error %T %v with policy %v", err, err, p != nil)
				}
				switch pe.Code {
				case CodeMalformed, CodeLimitExceeded, CodeValidation:
				default:
					t.Fatalf("unknown code %q", pe.Code)
				}
				continue
			}
			if len(doc) > MaxSize {
				t.Fatalf("accepted a %d-byte policy", len(doc))
			}
			all := []string{val}
			for _, s := range strings.Split(val, ",") {
				all = append(all, s)
			}
			c := ctx{}
			for _, k := range []string{"kms:calleraccount", "kms:encryptioncontextkeys", "kms:resourcealiases", "aws:sourceip", "aws:username", "aws:currenttime", "n", "b", "x", "k", "aws:sourcearn", "kms:encryptioncontext:a"} {
				c[k] = all
			}
			reqs := []*Request{
				{Principal: root, Action: "kms:Encrypt", Resource: keyARN},
				{Principal: "arn:aws:sts::111122223333:assumed-role/R/s", Account: acct, Action: "kms:DescribeKey", Resource: "*", Context: c},
				{Principal: val, Action: val, Resource: val, Context: c},
				{Principal: "cloudtrail.amazonaws.com", Action: "KMS:ENCRYPT", Resource: keyARN, Context: ctx{"k": {}}},
				{},
			}
			for _, r := range reqs {
				res := p.Check(r)
				if res.Decision > Deny || (res.Decision == Deny && res.Account) {
					t.Fatalf("Check = %+v", res)
				}
				if p.Evaluate(r) != res.Decision || p.AllowsAccountRoot(r) != (res.Account && res.Decision != Deny) {
					t.Fatalf("Evaluate/AllowsAccountRoot disagree with Check %+v", res)
				}
			}
		}
	})
}
