package policy

import (
	"fmt"
	"testing"
)

type ctx = map[string][]string

// condPolicy is a one-statement policy that allows everyone everything if
// the given condition block holds.
func condPolicy(t testing.TB, version, cond string) *Policy {
	t.Helper()
	doc := fmt.Sprintf(`{"Version":%q,"Statement":{"Effect":"Allow","Principal":"*","Action":"kms:*","Resource":"*","Condition":%s}}`, version, cond)
	p, err := Parse(doc)
	if err != nil {
		t.Fatalf("Parse(%s): %v", doc, err)
	}
	return p
}

func TestConditionOperators(t *testing.T) {
	ec := ctx{"kms:encryptioncontextkeys": {"AppName", "Project"}}
	tests := []struct {
		name string
		cond string // the Condition element
		ctx  ctx
		want bool
	}{
		// StringEquals and its negation, case-sensitive values.
		{"StringEquals match", `{"StringEquals":{"kms:CallerAccount":"111122223333"}}`, ctx{"kms:calleraccount": {"111122223333"}}, true},
		{"StringEquals other value", `{"StringEquals":{"kms:CallerAccount":"111122223333"}}`, ctx{"kms:calleraccount": {"444455556666"}}, false},
		{"StringEquals value case", `{"StringEquals":{"kms:EncryptionContext:AppName":"ExampleApp"}}`, ctx{"kms:encryptioncontext:appname": {"exampleapp"}}, false},
		{"StringEquals key case-insensitive", `{"StringEquals":{"KMS:ENCRYPTIONCONTEXT:APPNAME":"ExampleApp"}}`, ctx{"kms:encryptioncontext:appname": {"ExampleApp"}}, true},
		{"StringEquals missing key", `{"StringEquals":{"kms:CallerAccount":"111122223333"}}`, nil, false},
		{"StringEquals values are OR", `{"StringEquals":{"kms:ViaService":["ec2.us-west-2.amazonaws.com","rds.us-west-2.amazonaws.com"]}}`, ctx{"kms:viaservice": {"rds.us-west-2.amazonaws.com"}}, true},
		{"StringEquals keys are AND (one fails)", `{"StringEquals":{"kms:CallerAccount":"111122223333","kms:ViaService":"ec2.us-west-2.amazonaws.com"}}`, ctx{"kms:calleraccount": {"111122223333"}}, false},
		{"StringEquals keys are AND (both hold)", `{"StringEquals":{"kms:CallerAccount":"111122223333","kms:ViaService":"ec2.us-west-2.amazonaws.com"}}`, ctx{"kms:calleraccount": {"111122223333"}, "kms:viaservice": {"ec2.us-west-2.amazonaws.com"}}, true},
		{"operators are AND", `{"StringEquals":{"kms:CallerAccount":"111122223333"},"Bool":{"kms:GrantIsForAWSResource":"true"}}`, ctx{"kms:calleraccount": {"111122223333"}, "kms:grantisforawsresource": {"false"}}, false},
		{"StringNotEquals other value", `{"StringNotEquals":{"kms:CallerAccount":"111122223333"}}`, ctx{"kms:calleraccount": {"444455556666"}}, true},
		{"StringNotEquals same value", `{"StringNotEquals":{"kms:CallerAccount":"111122223333"}}`, ctx{"kms:calleraccount": {"111122223333"}}, false},
		{"StringNotEquals missing key holds", `{"StringNotEquals":{"kms:CallerAccount":"111122223333"}}`, nil, true},
		{"StringNotEquals one of list", `{"StringNotEquals":{"kms:CallerAccount":["1","111122223333"]}}`, ctx{"kms:calleraccount": {"111122223333"}}, false},
		{"StringEqualsIgnoreCase", `{"StringEqualsIgnoreCase":{"kms:EncryptionContext:AppName":"EXAMPLEAPP"}}`, ctx{"kms:encryptioncontext:appname": {"exampleApp"}}, true},
		{"StringEqualsIgnoreCase differs", `{"StringEqualsIgnoreCase":{"kms:EncryptionContext:AppName":"EXAMPLEAPP"}}`, ctx{"kms:encryptioncontext:appname": {"other"}}, false},
		{"StringNotEqualsIgnoreCase same", `{"StringNotEqualsIgnoreCase":{"kms:EncryptionContext:AppName":"EXAMPLEAPP"}}`, ctx{"kms:encryptioncontext:appname": {"exampleapp"}}, false},
		{"StringNotEqualsIgnoreCase missing", `{"StringNotEqualsIgnoreCase":{"kms:EncryptionContext:AppName":"x"}}`, nil, true},
		// StringLike with * and ?.
		{"StringLike star", `{"StringLike":{"kms:RequestAlias":"alias/*test*"}}`, ctx{"kms:requestalias": {"alias/my-test-key"}}, true},
		{"StringLike star no match", `{"StringLike":{"kms:RequestAlias":"alias/*test*"}}`, ctx{"kms:requestalias": {"alias/prod"}}, false},
		{"StringLike question", `{"StringLike":{"kms:RequestAlias":"alias/key-?"}}`, ctx{"kms:requestalias": {"alias/key-7"}}, true},
		{"StringLike question is one char", `{"StringLike":{"kms:RequestAlias":"alias/key-?"}}`, ctx{"kms:requestalias": {"alias/key-77"}}, false},
		{"StringLike question multibyte", `{"StringLike":{"kms:EncryptionContext:n":"caf?"}}`, ctx{"kms:encryptioncontext:n": {"café"}}, true},
		{"StringLike case-sensitive", `{"StringLike":{"kms:RequestAlias":"alias/Test*"}}`, ctx{"kms:requestalias": {"alias/test1"}}, false},
		{"StringLike missing", `{"StringLike":{"kms:RequestAlias":"*"}}`, nil, false},
		{"StringLike star matches empty", `{"StringLike":{"kms:RequestAlias":"alias/*"}}`, ctx{"kms:requestalias": {"alias/"}}, true},
		{"StringNotLike", `{"StringNotLike":{"kms:RequestAlias":"alias/prod*"}}`, ctx{"kms:requestalias": {"alias/test"}}, true},
		{"StringNotLike matches", `{"StringNotLike":{"kms:RequestAlias":"alias/prod*"}}`, ctx{"kms:requestalias": {"alias/prod-1"}}, false},
		{"StringNotLike missing holds", `{"StringNotLike":{"kms:RequestAlias":"alias/prod*"}}`, nil, true},
		// IfExists.
		{"StringEqualsIfExists missing", `{"StringEqualsIfExists":{"kms:ViaService":"ec2.us-west-2.amazonaws.com"}}`, nil, true},
		{"StringEqualsIfExists present match", `{"StringEqualsIfExists":{"kms:ViaService":"ec2.us-west-2.amazonaws.com"}}`, ctx{"kms:viaservice": {"ec2.us-west-2.amazonaws.com"}}, true},
		{"StringEqualsIfExists present other", `{"StringEqualsIfExists":{"kms:ViaService":"ec2.us-west-2.amazonaws.com"}}`, ctx{"kms:viaservice": {"s3.us-west-2.amazonaws.com"}}, false},
		{"StringNotEqualsIfExists present same", `{"StringNotEqualsIfExists":{"kms:ViaService":"ec2.us-west-2.amazonaws.com"}}`, ctx{"kms:viaservice": {"ec2.us-west-2.amazonaws.com"}}, false},
		{"NumericLessThanIfExists missing", `{"NumericLessThanIfExists":{"kms:ScheduleKeyDeletionPendingWindowInDays":"10"}}`, nil, true},
		{"BoolIfExists present false", `{"BoolIfExists":{"kms:GrantIsForAWSResource":"true"}}`, ctx{"kms:grantisforawsresource": {"false"}}, false},
		{"IpAddressIfExists missing", `{"IpAddressIfExists":{"aws:SourceIp":"10.0.0.0/8"}}`, nil, true},
		// Set operators on a multi-valued key.
		{"ForAnyValue one matches", `{"ForAnyValue:StringEquals":{"kms:EncryptionContextKeys":"AppName"}}`, ec, true},
		{"ForAnyValue none matches", `{"ForAnyValue:StringEquals":{"kms:EncryptionContextKeys":"Stage"}}`, ec, false},
		{"ForAnyValue missing set", `{"ForAnyValue:StringEquals":{"kms:EncryptionContextKeys":"AppName"}}`, nil, false},
		{"ForAnyValue empty set", `{"ForAnyValue:StringEquals":{"kms:EncryptionContextKeys":"AppName"}}`, ctx{"kms:encryptioncontextkeys": {}}, false},
		{"ForAllValues all in list", `{"ForAllValues:StringEquals":{"kms:EncryptionContextKeys":["AppName","Project","Stage"]}}`, ec, true},
		{"ForAllValues one outside", `{"ForAllValues:StringEquals":{"kms:EncryptionContextKeys":["AppName"]}}`, ec, false},
		{"ForAllValues missing set holds", `{"ForAllValues:StringEquals":{"kms:EncryptionContextKeys":["AppName"]}}`, nil, true},
		{"ForAllValues empty set holds", `{"ForAllValues:StringEquals":{"kms:EncryptionContextKeys":["AppName"]}}`, ctx{"kms:encryptioncontextkeys": {}}, true},
		{"ForAllValues StringLike", `{"ForAllValues:StringLike":{"kms:ResourceAliases":"alias/*Test*"}}`, ctx{"kms:resourcealiases": {"alias/aTest", "alias/Test2"}}, true},
		{"ForAllValues StringLike one outside", `{"ForAllValues:StringLike":{"kms:ResourceAliases":"alias/*Test*"}}`, ctx{"kms:resourcealiases": {"alias/aTest", "alias/prod"}}, false},
		{"ForAnyValue StringNotEquals some outside", `{"ForAnyValue:StringNotEquals":{"kms:GrantOperations":["Encrypt","Decrypt"]}}`, ctx{"kms:grantoperations": {"Encrypt", "Sign"}}, true},
		{"ForAnyValue StringNotEquals all inside", `{"ForAnyValue:StringNotEquals":{"kms:GrantOperations":["Encrypt","Decrypt"]}}`, ctx{"kms:grantoperations": {"Encrypt"}}, false},
		{"ForAllValues StringNotEquals none inside", `{"ForAllValues:StringNotEquals":{"kms:GrantOperations":["Decrypt"]}}`, ctx{"kms:grantoperations": {"Encrypt", "Sign"}}, true},
		{"ForAllValues StringNotEquals one inside", `{"ForAllValues:StringNotEquals":{"kms:GrantOperations":["Decrypt"]}}`, ctx{"kms:grantoperations": {"Encrypt", "Decrypt"}}, false},
		{"ForAnyValue IfExists missing", `{"ForAnyValue:StringEqualsIfExists":{"kms:EncryptionContextKeys":"AppName"}}`, nil, true},
		{"set prefix case-insensitive", `{"forallvalues:stringequals":{"kms:GrantOperations":["Encrypt"]}}`, ctx{"kms:grantoperations": {"Encrypt"}}, true},
		{"multi-valued key without set operator: any value", `{"StringEquals":{"kms:GrantOperations":"Decrypt"}}`, ctx{"kms:grantoperations": {"Encrypt", "Decrypt"}}, true},
		{"multi-valued key negated without set operator: no value", `{"StringNotEquals":{"kms:GrantOperations":"Decrypt"}}`, ctx{"kms:grantoperations": {"Encrypt", "Decrypt"}}, false},
		// Null.
		{"Null true, key absent", `{"Null":{"kms:BypassPolicyLockoutSafetyCheck":true}}`, nil, true},
		{"Null true, key present", `{"Null":{"kms:BypassPolicyLockoutSafetyCheck":true}}`, ctx{"kms:bypasspolicylockoutsafetycheck": {"false"}}, false},
		{"Null false, key present", `{"Null":{"kms:EncryptionContextKeys":false}}`, ec, true},
		{"Null false, key absent", `{"Null":{"kms:EncryptionContextKeys":"false"}}`, nil, false},
		{"Null false, empty set is absent", `{"Null":{"kms:EncryptionContextKeys":"false"}}`, ctx{"kms:encryptioncontextkeys": {}}, false},
		// Bool, with JSON booleans and strings.
		{"Bool JSON true", `{"Bool":{"kms:GrantIsForAWSResource":true}}`, ctx{"kms:grantisforawsresource": {"true"}}, true},
		{"Bool string true", `{"Bool":{"kms:GrantIsForAWSResource":"true"}}`, ctx{"kms:grantisforawsresource": {"True"}}, true},
		{"Bool false vs true", `{"Bool":{"kms:GrantIsForAWSResource":"false"}}`, ctx{"kms:grantisforawsresource": {"true"}}, false},
		{"Bool missing", `{"Bool":{"kms:GrantIsForAWSResource":"true"}}`, nil, false},
		{"Bool not a boolean", `{"Bool":{"kms:GrantIsForAWSResource":"yes"}}`, ctx{"kms:grantisforawsresource": {"yes"}}, false},
		// IpAddress, IPv4 and IPv6.
		{"IpAddress in v4 block", `{"IpAddress":{"aws:SourceIp":["192.0.2.0/24","203.0.113.0/24"]}}`, ctx{"aws:sourceip": {"203.0.113.7"}}, true},
		{"IpAddress outside v4", `{"IpAddress":{"aws:SourceIp":"192.0.2.0/24"}}`, ctx{"aws:sourceip": {"198.51.100.1"}}, false},
		{"IpAddress single address", `{"IpAddress":{"aws:SourceIp":"192.0.2.7"}}`, ctx{"aws:sourceip": {"192.0.2.7"}}, true},
		{"IpAddress single address other", `{"IpAddress":{"aws:SourceIp":"192.0.2.7"}}`, ctx{"aws:sourceip": {"192.0.2.8"}}, false},
		{"IpAddress v6 block", `{"IpAddress":{"aws:SourceIp":"2001:db8::/32"}}`, ctx{"aws:sourceip": {"2001:db8:1::5"}}, true},
		{"IpAddress v6 outside", `{"IpAddress":{"aws:SourceIp":"2001:db8::/32"}}`, ctx{"aws:sourceip": {"2001:db9::5"}}, false},
		{"IpAddress v4 vs v6 block", `{"IpAddress":{"aws:SourceIp":"2001:db8::/32"}}`, ctx{"aws:sourceip": {"192.0.2.1"}}, false},
		{"IpAddress v4-mapped caller", `{"IpAddress":{"aws:SourceIp":"192.0.2.0/24"}}`, ctx{"aws:sourceip": {"::ffff:192.0.2.9"}}, true},
		{"IpAddress unaligned block", `{"IpAddress":{"aws:SourceIp":"192.0.2.77/24"}}`, ctx{"aws:sourceip": {"192.0.2.1"}}, true},
		{"IpAddress bad policy value", `{"IpAddress":{"aws:SourceIp":"not-an-ip"}}`, ctx{"aws:sourceip": {"192.0.2.1"}}, false},
		{"IpAddress bad request value", `{"IpAddress":{"aws:SourceIp":"0.0.0.0/0"}}`, ctx{"aws:sourceip": {"localhost"}}, false},
		{"IpAddress missing", `{"IpAddress":{"aws:SourceIp":"0.0.0.0/0"}}`, nil, false},
		{"NotIpAddress outside", `{"NotIpAddress":{"aws:SourceIp":["192.0.2.0/24","203.0.113.0/24"]}}`, ctx{"aws:sourceip": {"198.51.100.1"}}, true},
		{"NotIpAddress inside", `{"NotIpAddress":{"aws:SourceIp":["192.0.2.0/24","203.0.113.0/24"]}}`, ctx{"aws:sourceip": {"192.0.2.1"}}, false},
		{"NotIpAddress missing holds", `{"NotIpAddress":{"aws:SourceIp":"192.0.2.0/24"}}`, nil, true},
		// Numeric.
		{"NumericEquals", `{"NumericEquals":{"kms:ScheduleKeyDeletionPendingWindowInDays":30}}`, ctx{"kms:schedulekeydeletionpendingwindowindays": {"30"}}, true},
		{"NumericEquals decimal", `{"NumericEquals":{"n":"7.0"}}`, ctx{"n": {"7"}}, true},
		{"NumericEquals other", `{"NumericEquals":{"n":30}}`, ctx{"n": {"7"}}, false},
		{"NumericNotEquals", `{"NumericNotEquals":{"n":30}}`, ctx{"n": {"7"}}, true},
		{"NumericNotEquals same", `{"NumericNotEquals":{"n":30}}`, ctx{"n": {"30"}}, false},
		{"NumericLessThan", `{"NumericLessThan":{"n":"10"}}`, ctx{"n": {"9"}}, true},
		{"NumericLessThan equal", `{"NumericLessThan":{"n":"10"}}`, ctx{"n": {"10"}}, false},
		{"NumericLessThanEquals equal", `{"NumericLessThanEquals":{"n":"10"}}`, ctx{"n": {"10"}}, true},
		{"NumericGreaterThan", `{"NumericGreaterThan":{"n":"10"}}`, ctx{"n": {"11"}}, true},
		{"NumericGreaterThan equal", `{"NumericGreaterThan":{"n":"10"}}`, ctx{"n": {"10"}}, false},
		{"NumericGreaterThanEquals", `{"NumericGreaterThanEquals":{"n":"-1"}}`, ctx{"n": {"-1"}}, true},
		{"Numeric not a number", `{"NumericLessThan":{"n":"10"}}`, ctx{"n": {"ten"}}, false},
		{"Numeric bad policy value", `{"NumericLessThan":{"n":"ten"}}`, ctx{"n": {"1"}}, false},
		{"Numeric missing", `{"NumericLessThan":{"n":"10"}}`, nil, false},
		// Dates: ISO 8601 and epoch seconds.
		{"DateLessThan ISO", `{"DateLessThan":{"aws:CurrentTime":"2025-01-01T00:00:00Z"}}`, ctx{"aws:currenttime": {"2024-12-31T23:59:59Z"}}, true},
		{"DateLessThan ISO after", `{"DateLessThan":{"aws:CurrentTime":"2025-01-01T00:00:00Z"}}`, ctx{"aws:currenttime": {"2025-01-01T00:00:01Z"}}, false},
		{"DateLessThan date only", `{"DateLessThan":{"aws:CurrentTime":"2025-01-01"}}`, ctx{"aws:currenttime": {"2024-06-01T12:00:00Z"}}, true},
		{"DateGreaterThan epoch policy", `{"DateGreaterThan":{"aws:EpochTime":"1700000000"}}`, ctx{"aws:epochtime": {"1700000001"}}, true},
		{"DateGreaterThan epoch vs ISO", `{"DateGreaterThan":{"kms:ValidTo":"2023-11-14T22:13:20Z"}}`, ctx{"kms:validto": {"1700000001"}}, true},
		{"DateEquals offset", `{"DateEquals":{"t":"2025-01-01T09:00:00+09:00"}}`, ctx{"t": {"2025-01-01T00:00:00Z"}}, true},
		{"DateNotEquals", `{"DateNotEquals":{"t":"2025-01-01T00:00:00Z"}}`, ctx{"t": {"2025-01-02T00:00:00Z"}}, true},
		{"DateLessThanEquals equal", `{"DateLessThanEquals":{"t":"2025-01-01T00:00:00Z"}}`, ctx{"t": {"2025-01-01T00:00:00.000Z"}}, true},
		{"DateGreaterThanEquals before", `{"DateGreaterThanEquals":{"t":"2025-01-01T00:00:00Z"}}`, ctx{"t": {"2024-01-01T00:00:00Z"}}, false},
		{"Date bad request value", `{"DateLessThan":{"t":"2025-01-01T00:00:00Z"}}`, ctx{"t": {"yesterday"}}, false},
		// ARNs: six parts, each with wildcards.
		{"ArnEquals exact", `{"ArnEquals":{"aws:SourceArn":"arn:aws:cloudtrail:us-west-2:111122223333:trail/finance"}}`, ctx{"aws:sourcearn": {"arn:aws:cloudtrail:us-west-2:111122223333:trail/finance"}}, true},
		{"ArnEquals other", `{"ArnEquals":{"aws:SourceArn":"arn:aws:cloudtrail:us-west-2:111122223333:trail/finance"}}`, ctx{"aws:sourcearn": {"arn:aws:cloudtrail:us-west-2:111122223333:trail/hr"}}, false},
		{"ArnLike wildcard region", `{"ArnLike":{"aws:PrincipalArn":"arn:aws:iam::*:role/Admin*"}}`, ctx{"aws:principalarn": {"arn:aws:iam::111122223333:role/AdminA"}}, true},
		{"ArnLike wildcard does not cross parts", `{"ArnLike":{"aws:SourceArn":"arn:aws:s3:::*"}}`, ctx{"aws:sourcearn": {"arn:aws:s3:us-east-1:1:bucket"}}, false},
		{"ArnLike resource with colons", `{"ArnLike":{"aws:SourceArn":"arn:aws:logs:*:111122223333:log-group:*"}}`, ctx{"aws:sourcearn": {"arn:aws:logs:us-east-1:111122223333:log-group:app:*"}}, true},
		{"ArnLike not an ARN", `{"ArnLike":{"aws:SourceArn":"arn:aws:s3:::*"}}`, ctx{"aws:sourcearn": {"bucket"}}, false},
		{"ArnNotLike", `{"ArnNotLike":{"aws:PrincipalArn":"arn:aws:iam::*:role/Admin*"}}`, ctx{"aws:principalarn": {"arn:aws:iam::111122223333:user/bob"}}, true},
		{"ArnNotEquals same", `{"ArnNotEquals":{"aws:PrincipalArn":"arn:aws:iam::111122223333:user/bob"}}`, ctx{"aws:principalarn": {"arn:aws:iam::111122223333:user/bob"}}, false},
		{"ArnNotLike missing holds", `{"ArnNotLike":{"aws:PrincipalArn":"arn:*:*:*:*:*"}}`, nil, true},
		// BinaryEquals compares the base64 text.
		{"BinaryEquals", `{"BinaryEquals":{"b":"QmluYXJ5"}}`, ctx{"b": {"QmluYXJ5"}}, true},
		{"BinaryEquals other", `{"BinaryEquals":{"b":"QmluYXJ5"}}`, ctx{"b": {"QmluYXJ6"}}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := condPolicy(t, "2012-10-17", tt.cond)
			r := &Request{Principal: "arn:aws:iam::111122223333:user/alice", Action: "kms:Encrypt", Resource: "*", Context: tt.ctx}
			want := NoMatch
			if tt.want {
				want = Allow
			}
			if got := p.Evaluate(r); got != want {
				t.Errorf("%s with %v: got %v, want %v", tt.cond, tt.ctx, got, want)
			}
		})
	}
}

func TestPolicyVariables(t *testing.T) {
	tests := []struct {
		name    string
		version string
		cond    string
		ctx     ctx
		want    bool
	}{
		{"username substituted", "2012-10-17", `{"StringEquals":{"kms:EncryptionContext:user":"${aws:username}"}}`, ctx{"aws:username": {"bob"}, "kms:encryptioncontext:user": {"bob"}}, true},
		{"username other user", "2012-10-17", `{"StringEquals":{"kms:EncryptionContext:user":"${aws:username}"}}`, ctx{"aws:username": {"alice"}, "kms:encryptioncontext:user": {"bob"}}, false},
		{"variable missing matches nothing", "2012-10-17", `{"StringEquals":{"kms:EncryptionContext:user":"${aws:username}"}}`, ctx{"kms:encryptioncontext:user": {"${aws:username}"}}, false},
		{"variable missing, negated holds", "2012-10-17", `{"StringNotEquals":{"kms:EncryptionContext:user":"${aws:username}"}}`, ctx{"kms:encryptioncontext:user": {"bob"}}, true},
		{"default value", "2012-10-17", `{"StringEquals":{"kms:EncryptionContext:user":"${aws:username, 'nobody'}"}}`, ctx{"kms:encryptioncontext:user": {"nobody"}}, true},
		{"2008 version is literal", "2008-10-17", `{"StringEquals":{"kms:EncryptionContext:user":"${aws:username}"}}`, ctx{"aws:username": {"bob"}, "kms:encryptioncontext:user": {"${aws:username}"}}, true},
		{"StringLike prefix variable", "2012-10-17", `{"StringLike":{"kms:EncryptionContext:path":"home/${aws:username}/*"}}`, ctx{"aws:username": {"bob"}, "kms:encryptioncontext:path": {"home/bob/x"}}, true},
		{"substituted star is literal", "2012-10-17", `{"StringLike":{"kms:EncryptionContext:path":"home/${aws:username}"}}`, ctx{"aws:username": {"*"}, "kms:encryptioncontext:path": {"home/bob"}}, false},
		{"${*} is a literal star", "2012-10-17", `{"StringLike":{"kms:EncryptionContext:v":"a${*}"}}`, ctx{"kms:encryptioncontext:v": {"a*"}}, true},
		{"${*} is not a wildcard", "2012-10-17", `{"StringLike":{"kms:EncryptionContext:v":"a${*}"}}`, ctx{"kms:encryptioncontext:v": {"abc"}}, false},
		{"ArnEquals with variable holding colons", "2012-10-17", `{"ArnEquals":{"aws:SourceArn":"${aws:PrincipalArn}"}}`, ctx{"aws:principalarn": {"arn:aws:iam::111122223333:user/bob"}, "aws:sourcearn": {"arn:aws:iam::111122223333:user/bob"}}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := condPolicy(t, tt.version, tt.cond)
			r := &Request{Principal: "arn:aws:iam::111122223333:user/bob", Action: "kms:Decrypt", Resource: "*", Context: tt.ctx}
			if got := p.Evaluate(r) == Allow; got != tt.want {
				t.Errorf("%s with %v: allowed=%v, want %v", tt.cond, tt.ctx, got, tt.want)
			}
		})
	}
}

func TestGlobMatch(t *testing.T) {
	tests := []struct {
		p, s string
		fold bool
		want bool
	}{
		{"", "", false, true},
		{"*", "", false, true},
		{"", "a", false, false},
		{"a*b*c", "aXbYc", false, true},
		{"a*b*c", "aXbY", false, false},
		{"*a", "bbba", false, true},
		{"a**", "a", false, true},
		{"??", "ab", false, true},
		{"??", "a", false, false},
		{"kms:get*", "kms:GetKeyPolicy", true, true},
		{"kms:get*", "kms:GetKeyPolicy", false, false},
		{"kms:encrypt", "KMS:ENCRYPT", true, true},
		{"x\x00*", "x*", false, true},
		{"x\x00*", "xy", false, false},
		{"*ab*ab*", "xxabyyabzz", false, true},
		{"*é?", "caféx", false, true},
	}
	for _, tt := range tests {
		if got := globMatch(tt.p, tt.s, tt.fold); got != tt.want {
			t.Errorf("globMatch(%q, %q, %v) = %v, want %v", tt.p, tt.s, tt.fold, got, tt.want)
		}
	}
}
