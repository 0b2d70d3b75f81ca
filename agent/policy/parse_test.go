package policy

import (
	"errors"
	"strings"
	"testing"
)

func wantErr(t *testing.T, err error, code, msg string) {
	t.Helper()
	var pe *Error
	if !errors.As(err, &pe) {
		t.Fatalf("got %v (%T), want *Error %s", err, err, code)
	}
	if pe.Code != code || !strings.Contains(pe.Message, msg) {
		t.Errorf("got %s %q, want %s containing %q", pe.Code, pe.Message, code, msg)
	}
}

const okStmt = `{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111122223333:root"},"Action":"kms:*","Resource":"*"}`

func TestParseMalformed(t *testing.T) {
	big := wrap(okStmt)
	big = big[:len(big)-1] + `,"Id":"` + strings.Repeat("x", MaxSize) + `"}`
	tests := []struct {
		name, doc, code, msg string
	}{
		{"empty", "", CodeValidation, "length greater than or equal to 1"},
		{"too big", big, CodeLimitExceeded, "32768"},
		{"over the wire limit", strings.Repeat(" ", maxWireSize+1), CodeValidation, "less than or equal to 131072"},
		{"control character", "{\x01}", CodeValidation, "regular expression pattern"},
		{"character above U+00FF", wrap(`{"Sid":"鍵","Effect":"Allow","Principal":"*","Action":"kms:*","Resource":"*"}`), CodeValidation, "regular expression pattern"},
		{"not JSON", `{"Version":"2012-10-17",`, CodeMalformed, "not valid JSON"},
		{"JSON array", `[` + okStmt + `]`, CodeMalformed, "not valid JSON"},
		{"JSON null", `null`, CodeMalformed, "not valid JSON"},
		{"trailing data", wrap(okStmt) + `{}`, CodeMalformed, "after the top-level object"},
		{"trailing garbage", wrap(okStmt) + ` garbage`, CodeMalformed, "after the top-level object"},
		{"trailing bracket", wrap(okStmt) + `]`, CodeMalformed, "after the top-level object"},
		{"missing Statement", `{"Version":"2012-10-17"}`, CodeMalformed, "'Statement'"},
		{"empty Statement", `{"Version":"2012-10-17","Statement":[]}`, CodeMalformed, "at least one statement"},
		{"Statement is a string", `{"Version":"2012-10-17","Statement":"x"}`, CodeMalformed, "Statement must be"},
		{"Statement holds a string", `{"Version":"2012-10-17","Statement":["x"]}`, CodeMalformed, "must be an object"},
		{"bad Version", `{"Version":"2020-01-01","Statement":` + okStmt + `}`, CodeMalformed, "version"},
		{"unknown top element", `{"Version":"2012-10-17","Foo":1,"Statement":` + okStmt + `}`, CodeMalformed, `"Foo"`},
		{"wrong Effect", wrap(`{"Effect":"Permit","Principal":"*","Action":"kms:*","Resource":"*"}`), CodeMalformed, "Effect"},
		{"Effect lower case", wrap(`{"Effect":"allow","Principal":"*","Action":"kms:*","Resource":"*"}`), CodeMalformed, "Effect"},
		{"no Effect", wrap(`{"Principal":"*","Action":"kms:*","Resource":"*"}`), CodeMalformed, "no Effect"},
		{"no Principal", wrap(`{"Effect":"Allow","Action":"kms:*","Resource":"*"}`), CodeMalformed, "no principal"},
		{"Principal and NotPrincipal", wrap(`{"Effect":"Allow","Principal":"*","NotPrincipal":"*","Action":"kms:*","Resource":"*"}`), CodeMalformed, "both Principal and NotPrincipal"},
		{"Action and NotAction", wrap(`{"Effect":"Allow","Principal":"*","Action":"kms:*","NotAction":"kms:Decrypt","Resource":"*"}`), CodeMalformed, "both Action and NotAction"},
		{"Resource and NotResource", wrap(`{"Effect":"Allow","Principal":"*","Action":"kms:*","Resource":"*","NotResource":"*"}`), CodeMalformed, "both Resource and NotResource"},
		{"unknown statement element", wrap(`{"Effect":"Allow","Principal":"*","Action":"kms:*","Resource":"*","Foo":"x"}`), CodeMalformed, `"Foo"`},
		{"principal is a bare user name", wrap(`{"Effect":"Allow","Principal":{"AWS":"alice"},"Action":"kms:*","Resource":"*"}`), CodeMalformed, "invalid principals"},
		{"principal with a wildcard", wrap(`{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111122223333:user/*"},"Action":"kms:*","Resource":"*"}`), CodeMalformed, "invalid principals"},
		{"principal is a group", wrap(`{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111122223333:group/admins"},"Action":"kms:*","Resource":"*"}`), CodeMalformed, "invalid principals"},
		{"principal account id too short", wrap(`{"Effect":"Allow","Principal":{"AWS":"11112223333"},"Action":"kms:*","Resource":"*"}`), CodeMalformed, "invalid principals"},
		{"principal as ARN string", wrap(`{"Effect":"Allow","Principal":"arn:aws:iam::111122223333:root","Action":"kms:*","Resource":"*"}`), CodeMalformed, "invalid principals"},
		{"unknown principal type", wrap(`{"Effect":"Allow","Principal":{"Group":"x"},"Action":"kms:*","Resource":"*"}`), CodeMalformed, "invalid principals"},
		{"empty principal list", wrap(`{"Effect":"Allow","Principal":{"AWS":[]},"Action":"kms:*","Resource":"*"}`), CodeMalformed, "invalid principals"},
		{"action without vendor", wrap(`{"Effect":"Allow","Principal":"*","Action":"Encrypt","Resource":"*"}`), CodeMalformed, "prefaced by a vendor"},
		{"action with two colons", wrap(`{"Effect":"Allow","Principal":"*","Action":"kms:En:crypt","Resource":"*"}`), CodeMalformed, "only one colon"},
		{"action is a number", wrap(`{"Effect":"Allow","Principal":"*","Action":5,"Resource":"*"}`), CodeMalformed, "Action must be"},
		{"resource not an ARN", wrap(`{"Effect":"Allow","Principal":"*","Action":"kms:*","Resource":"key/1"}`), CodeMalformed, "ARN format"},
		{"duplicate Sid", wrap(`{"Sid":"a","Effect":"Allow","Principal":"*","Action":"kms:*","Resource":"*"}`, `{"Sid":"a","Effect":"Deny","Principal":"*","Action":"kms:*","Resource":"*"}`), CodeMalformed, "must be unique"},
		{"duplicate element", wrap(`{"Effect":"Allow","Principal":"*","Action":"kms:*","Action":"kms:Decrypt","Resource":"*"}`), CodeMalformed, `duplicate element "Action"`},
		{"duplicate condition key", wrap(`{"Effect":"Allow","Principal":"*","Action":"kms:*","Resource":"*","Condition":{"StringEquals":{"k":"a","k":"b"}}}`), CodeMalformed, `duplicate element "k"`},
		{"duplicate Statement", `{"Statement":` + okStmt + `,"Statement":` + okStmt + `}`, CodeMalformed, `duplicate element "Statement"`},
		{"too deep", wrap(`{"Effect":"Allow","Principal":"*","Action":"kms:*","Resource":"*","Condition":{"StringEquals":{"k":` + strings.Repeat("[", 100) + strings.Repeat("]", 100) + `}}}`), CodeMalformed, "deep"},
		{"unknown operator", wrap(`{"Effect":"Allow","Principal":"*","Action":"kms:*","Resource":"*","Condition":{"StringMatches":{"kms:CallerAccount":"1"}}}`), CodeMalformed, "Invalid Condition type : StringMatches"},
		{"Null with IfExists", wrap(`{"Effect":"Allow","Principal":"*","Action":"kms:*","Resource":"*","Condition":{"NullIfExists":{"k":"true"}}}`), CodeMalformed, "Invalid Condition type"},
		{"set prefix alone", wrap(`{"Effect":"Allow","Principal":"*","Action":"kms:*","Resource":"*","Condition":{"ForAnyValue:":{"k":"true"}}}`), CodeMalformed, "Invalid Condition type"},
		{"condition not an object", wrap(`{"Effect":"Allow","Principal":"*","Action":"kms:*","Resource":"*","Condition":["x"]}`), CodeMalformed, "Condition must be"},
		{"condition value an object", wrap(`{"Effect":"Allow","Principal":"*","Action":"kms:*","Resource":"*","Condition":{"StringEquals":{"k":{"a":"b"}}}}`), CodeMalformed, "values must be"},
		{"condition value null", wrap(`{"Effect":"Allow","Principal":"*","Action":"kms:*","Resource":"*","Condition":{"StringEquals":{"k":null}}}`), CodeMalformed, "values must be"},
		{"empty condition key", wrap(`{"Effect":"Allow","Principal":"*","Action":"kms:*","Resource":"*","Condition":{"StringEquals":{"":"x"}}}`), CodeMalformed, "must not be empty"},
		{"Principal in an identity policy", wrap(okStmt), CodeMalformed, "should not specify a principal"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			parse := Parse
			if strings.Contains(tt.name, "identity") {
				parse = ParseIdentity
			}
			p, err := parse(tt.doc)
			if p != nil {
				t.Errorf("got a policy with the error")
			}
			wantErr(t, err, tt.code, tt.msg)
		})
	}
}

func TestParseAccepts(t *testing.T) {
	tests := []struct {
		name, doc string
	}{
		{"exactly MaxSize", func() string {
			d := wrap(okStmt)
			d = d[:len(d)-1] + `,"Id":"`
			return d + strings.Repeat("x", MaxSize-len(d)-2) + `"}`
		}()},
		{"Statement as an object", `{"Version":"2012-10-17","Statement":` + okStmt + `}`},
		{"no Version (2008-10-17)", `{"Statement":` + okStmt + `}`},
		{"Version 2008-10-17", `{"Version":"2008-10-17","Statement":` + okStmt + `}`},
		{"statements without Sid", wrap(okStmt, okStmt)},
		{"same key in different objects", wrap(`{"Effect":"Allow","Principal":"*","Action":"kms:*","Resource":"*","Condition":{"StringEquals":{"k":"a"},"StringLike":{"k":"b"}}}`)},
		{"Sid with spaces", wrap(`{"Sid":"Allow use of the key","Effect":"Allow","Principal":"*","Action":"kms:*","Resource":"*"}`)},
		{"Latin-1 characters", wrap(`{"Sid":"clé","Effect":"Allow","Principal":"*","Action":"kms:*","Resource":"*"}`)},
		{"no Action: ineffective but accepted", wrap(`{"Effect":"Allow","Principal":"*","Resource":"*"}`)},
		{"no Resource: ineffective but accepted", wrap(`{"Effect":"Allow","Principal":"*","Action":"kms:*"}`)},
		{"bare account id", wrap(`{"Effect":"Allow","Principal":{"AWS":"111122223333"},"Action":"kms:*","Resource":"*"}`)},
		{"assumed-role session principal", wrap(`{"Effect":"Allow","Principal":{"AWS":"arn:aws:sts::111122223333:assumed-role/R/s"},"Action":"kms:*","Resource":"*"}`)},
		{"role with a path", wrap(`{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111122223333:role/team/R"},"Action":"kms:*","Resource":"*"}`)},
		{"other partition", wrap(`{"Effect":"Allow","Principal":{"AWS":"arn:aws-cn:iam::111122223333:root"},"Action":"kms:*","Resource":"*"}`)},
		{"service and federated principals", wrap(`{"Effect":"Allow","Principal":{"Service":["cloudtrail.amazonaws.com"],"Federated":"cognito-identity.amazonaws.com"},"Action":"kms:*","Resource":"*"}`)},
		{"NotPrincipal, NotAction, NotResource", wrap(`{"Effect":"Deny","NotPrincipal":{"AWS":"arn:aws:iam::111122223333:root"},"NotAction":"kms:Describe*","NotResource":"arn:aws:kms:*:111122223333:key/*"}`)},
		{"action *", wrap(`{"Effect":"Allow","Principal":"*","Action":"*","Resource":"*"}`)},
		{"numbers and booleans in conditions", wrap(`{"Effect":"Allow","Principal":"*","Action":"kms:*","Resource":"*","Condition":{"NumericLessThan":{"n":[1,2.5,-3e2]},"Bool":{"b":false}}}`)},
		{"operator names case-insensitively", wrap(`{"Effect":"Allow","Principal":"*","Action":"kms:*","Resource":"*","Condition":{"stringequalsifexists":{"k":"v"}}}`)},
		{"DEL is in the API's pattern", wrap("{\"Sid\":\"a\x7fb\",\"Effect\":\"Allow\",\"Principal\":\"*\",\"Action\":\"kms:*\",\"Resource\":\"*\"}")},
		{"whitespace around the document", "\n\t " + wrap(okStmt) + "\r\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if len(tt.doc) > MaxSize {
				t.Fatalf("test document is %d bytes", len(tt.doc))
			}
			if _, err := Parse(tt.doc); err != nil {
				t.Errorf("Parse: %v", err)
			}
		})
	}
}

func TestPrincipalsAndElements(t *testing.T) {
	t.Run("ineffective statements never apply", func(t *testing.T) {
		p := mustParse(t, wrap(`{"Effect":"Deny","Principal":"*","Resource":"*"}`, `{"Effect":"Deny","Principal":"*","Action":"kms:*"}`, `{"Effect":"Allow","Principal":"*","Action":"kms:*","Resource":"*"}`))
		runGuide(t, p, []guideCase{{"allowed", alice, "kms:Decrypt", nil, "", Allow, false}})
	})
	t.Run("bare account id delegates like the root ARN", func(t *testing.T) {
		p := mustParse(t, wrap(`{"Effect":"Allow","Principal":{"AWS":"111122223333"},"Action":"kms:*","Resource":"*"}`))
		runGuide(t, p, []guideCase{
			{"root", root, "kms:Decrypt", nil, "", Allow, false},
			{"user", alice, "kms:Decrypt", nil, "", NoMatch, true},
			{"other account", otherUser, "kms:Decrypt", nil, "", NoMatch, false},
		})
	})
	t.Run("Request.Account overrides the ARN's", func(t *testing.T) {
		p := mustParse(t, DefaultKeyPolicy(acct))
		r := &Request{Principal: "cloudtrail.amazonaws.com", Account: acct, Action: "kms:Decrypt", Resource: keyARN}
		if res := p.Check(r); res.Decision != NoMatch || !res.Account {
			t.Errorf("got %+v", res)
		}
	})
	t.Run("account deny covers every principal of the account", func(t *testing.T) {
		p := mustParse(t, wrap(okStmt, `{"Sid":"no deletion","Effect":"Deny","Principal":{"AWS":"111122223333"},"Action":"kms:ScheduleKeyDeletion","Resource":"*"}`))
		runGuide(t, p, []guideCase{
			{"root denied", root, "kms:ScheduleKeyDeletion", nil, "", Deny, false},
			{"user denied", alice, "kms:ScheduleKeyDeletion", nil, "", Deny, false},
			{"other action", alice, "kms:Decrypt", nil, "", NoMatch, true},
		})
		if got := p.Check(&Request{Principal: alice, Action: "kms:ScheduleKeyDeletion", Resource: keyARN}).Sid; got != "no deletion" {
			t.Errorf("Sid %q", got)
		}
	})
	t.Run("NotPrincipal deny everyone but the admin role", func(t *testing.T) {
		p := mustParse(t, wrap(`{"Effect":"Allow","Principal":"*","Action":"kms:*","Resource":"*"}`,
			`{"Effect":"Deny","NotPrincipal":{"AWS":["arn:aws:iam::111122223333:role/Admin","arn:aws:iam::111122223333:root"]},"Action":"kms:PutKeyPolicy","Resource":"*"}`))
		runGuide(t, p, []guideCase{
			{"admin role", role("Admin"), "kms:PutKeyPolicy", nil, "", Allow, false},
			{"admin session", session("Admin", "x"), "kms:PutKeyPolicy", nil, "", Allow, false},
			{"root", root, "kms:PutKeyPolicy", nil, "", Allow, false},
			{"other user of the account", alice, "kms:PutKeyPolicy", nil, "", Deny, false},
			{"other user, other action", alice, "kms:Decrypt", nil, "", Allow, false},
		})
	})
	t.Run("NotAction and NotResource", func(t *testing.T) {
		p, err := ParseIdentity(wrap(`{"Effect":"Allow","NotAction":["kms:ScheduleKeyDeletion","kms:PutKeyPolicy"],"NotResource":"arn:aws:kms:*:*:key/secret-*"}`))
		if err != nil {
			t.Fatal(err)
		}
		runGuide(t, p, []guideCase{
			{"other action, other key", alice, "kms:Decrypt", nil, "", Allow, false},
			{"excluded action", alice, "kms:putkeypolicy", nil, "", NoMatch, false},
			{"excluded key", alice, "kms:Decrypt", nil, "arn:aws:kms:us-west-2:111122223333:key/secret-1", NoMatch, false},
		})
	})
	t.Run("role with a path matches its sessions", func(t *testing.T) {
		p := mustParse(t, wrap(`{"Effect":"Allow","Principal":{"AWS":["arn:aws:iam::111122223333:role/team/R","arn:aws:sts::111122223333:assumed-role/S/fixed"]},"Action":"kms:Decrypt","Resource":"*"}`))
		runGuide(t, p, []guideCase{
			{"session of the role", session("R", "any"), "kms:Decrypt", nil, "", Allow, false},
			{"the role ARN itself", "arn:aws:iam::111122223333:role/team/R", "kms:Decrypt", nil, "", Allow, false},
			{"the named session", session("S", "fixed"), "kms:Decrypt", nil, "", Allow, false},
			{"another session of S", session("S", "other"), "kms:Decrypt", nil, "", NoMatch, false},
			{"another partition", "arn:aws-cn:sts::111122223333:assumed-role/R/any", "kms:Decrypt", nil, "", NoMatch, false},
			{"a malformed session ARN", "arn:aws:sts::111122223333:assumed-role/R", "kms:Decrypt", nil, "", NoMatch, false},
		})
	})
	t.Run("Resource ARN in a key policy", func(t *testing.T) {
		p := mustParse(t, wrap(`{"Effect":"Allow","Principal":"*","Action":"kms:*","Resource":"arn:aws:kms:us-west-2:111122223333:key/1234abcd-*"}`))
		runGuide(t, p, []guideCase{
			{"this key", alice, "kms:Decrypt", nil, "", Allow, false},
			{"another key", alice, "kms:Decrypt", nil, "arn:aws:kms:us-west-2:111122223333:key/ffff", NoMatch, false},
		})
	})
	t.Run("Resource with a policy variable", func(t *testing.T) {
		p, err := ParseIdentity(wrap(`{"Effect":"Allow","Action":"kms:Decrypt","Resource":"arn:aws:kms:*:${aws:PrincipalAccount}:key/*"}`))
		if err != nil {
			t.Fatal(err)
		}
		runGuide(t, p, []guideCase{
			{"own account", alice, "kms:Decrypt", ctx{"aws:principalaccount": {acct}}, "", Allow, false},
			{"other account", alice, "kms:Decrypt", ctx{"aws:principalaccount": {"444455556666"}}, "", NoMatch, false},
			{"no variable", alice, "kms:Decrypt", nil, "", NoMatch, false},
		})
	})
}

func TestAddEncryptionContext(t *testing.T) {
	p := mustParse(t, wrap(`{"Effect":"Allow","Principal":"*","Action":"kms:Decrypt","Resource":"*","Condition":{
  "StringEquals":{"kms:EncryptionContext:Dept":"IT"},"ForAllValues:StringEquals":{"kms:EncryptionContextKeys":["Dept","Project"]}}}`))
	for _, tt := range []struct {
		ec   map[string]string
		want Decision
	}{
		{map[string]string{"Dept": "IT"}, Allow},
		{map[string]string{"dept": "IT"}, NoMatch}, // key "dept" is not in the ForAllValues list
		{map[string]string{"Dept": "IT", "Project": "Alpha"}, Allow},
		{map[string]string{"Dept": "IT", "Stage": "x"}, NoMatch},
		{map[string]string{}, NoMatch},
		{nil, NoMatch},
	} {
		c := ctx{}
		AddEncryptionContext(c, tt.ec)
		if len(tt.ec) == 0 && len(c) != 0 {
			t.Errorf("empty context added %v", c)
		}
		if got := p.Evaluate(&Request{Principal: alice, Action: "kms:Decrypt", Resource: keyARN, Context: c}); got != tt.want {
			t.Errorf("%v: got %v, want %v", tt.ec, got, tt.want)
		}
	}
	var nilPolicy *Policy
	if got := nilPolicy.Check(&Request{Principal: root}); got != (Result{}) {
		t.Errorf("nil policy: %+v", got)
	}
}
