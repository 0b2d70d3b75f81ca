package policy

import (
	"strings"
	"testing"
)

// The key policies below are the AWS KMS Developer Guide's examples
// (/work/shared/kms-guide/001_*.txt), copied as printed except where the
// PDF conversion broke them: "kms>Delete*" is the guide's "kms:Delete*"
// (TestGuideTypoRejected shows the broken form is refused), and statements
// printed alone are wrapped in {"Version":"2012-10-17","Statement":[...]}.

const (
	acct      = "111122223333"
	root      = "arn:aws:iam::111122223333:root"
	alice     = "arn:aws:iam::111122223333:user/alice"
	otherUser = "arn:aws:iam::444455556666:user/bob"
	otherRoot = "arn:aws:iam::444455556666:root"
	keyARN    = "arn:aws:kms:us-west-2:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"
)

func role(name string) string { return "arn:aws:iam::111122223333:role/" + name }
func session(roleName, s string) string {
	return "arn:aws:sts::111122223333:assumed-role/" + roleName + "/" + s
}

func wrap(stmts ...string) string {
	return `{"Version":"2012-10-17","Statement":[` + strings.Join(stmts, ",") + `]}`
}

// guideCase is one request against a guide policy and its expected
// outcome: the Decision, and whether the account delegation applies.
type guideCase struct {
	name      string
	principal string
	action    string
	ctx       ctx
	resource  string // keyARN if empty
	want      Decision
	account   bool
}

func runGuide(t *testing.T, p *Policy, cases []guideCase) {
	t.Helper()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			res := c.resource
			if res == "" {
				res = keyARN
			}
			r := &Request{Principal: c.principal, Action: c.action, Resource: res, Context: c.ctx}
			got := p.Check(r)
			if got.Decision != c.want || got.Account != c.account {
				t.Errorf("%s %s %v: got %v account=%v, want %v account=%v", c.principal, c.action, c.ctx, got.Decision, got.Account, c.want, c.account)
			}
			if got.Decision != p.Evaluate(r) || (got.Account && got.Decision != Deny) != p.AllowsAccountRoot(r) {
				t.Errorf("Evaluate/AllowsAccountRoot disagree with Check: %+v", got)
			}
		})
	}
}

func mustParse(t *testing.T, doc string) *Policy {
	t.Helper()
	p, err := Parse(doc)
	if err != nil {
		t.Fatalf("Parse: %v\n%s", err, doc)
	}
	return p
}

// The guide's complete console key policy: account, key administrators,
// key users, and grants for AWS resources.
const guideConsolePolicy = `{
  "Id": "key-consolepolicy",
  "Version": "2012-10-17",
  "Statement": [
    {
      "Sid": "Enable IAM User Permissions",
      "Effect": "Allow",
      "Principal": {
        "AWS": "arn:aws:iam::111122223333:root"
      },
      "Action": "kms:*",
      "Resource": "*"
    },
    {
      "Sid": "Allow access for Key Administrators",
      "Effect": "Allow",
      "Principal": {
        "AWS": "arn:aws:iam::111122223333:role/ExampleAdminRole"
      },
      "Action": [
        "kms:Create*",
        "kms:Describe*",
        "kms:Enable*",
        "kms:List*",
        "kms:Put*",
        "kms:Update*",
        "kms:Revoke*",
        "kms:Disable*",
        "kms:Get*",
        "kms:Delete*",
        "kms:TagResource",
        "kms:UntagResource",
        "kms:ScheduleKeyDeletion",
        "kms:CancelKeyDeletion"
    ],
    "Resource": "*"
},
{
    "Sid": "Allow use of the key",
    "Effect": "Allow",
    "Principal": {
        "AWS": "arn:aws:iam::111122223333:role/ExampleUserRole"
    },
    "Action": [
        "kms:Encrypt",
        "kms:Decrypt",
        "kms:ReEncrypt*",
        "kms:GenerateDataKey*",
        "kms:DescribeKey"
    ],
    "Resource": "*"
},
{
    "Sid": "Allow attachment of persistent resources",
    "Effect": "Allow",
    "Principal": {
        "AWS": "arn:aws:iam::111122223333:role/ExampleUserRole"
    },
    "Action": [
        "kms:CreateGrant",
        "kms:ListGrants",
        "kms:RevokeGrant"
    ],
    "Resource": "*",
    "Condition": {
        "Bool": {
            "kms:GrantIsForAWSResource": "true"
        }
    }
}
]
}`

func TestGuideConsoleKeyPolicy(t *testing.T) {
	p := mustParse(t, guideConsolePolicy)
	if p.ID != "key-consolepolicy" || p.Statements() != 4 {
		t.Fatalf("Id %q, %d statements", p.ID, p.Statements())
	}
	forAWS := ctx{"kms:grantisforawsresource": {"true"}}
	notForAWS := ctx{"kms:grantisforawsresource": {"false"}}
	runGuide(t, p, []guideCase{
		{"account root may do anything", root, "kms:ScheduleKeyDeletion", nil, "", Allow, false},
		{"account root, odd action case", root, "KMS:putkeypolicy", nil, "", Allow, false},
		{"account root, account-level resource", root, "kms:CreateKey", nil, "*", Allow, false},
		{"user of the account is delegated to IAM", alice, "kms:Decrypt", nil, "", NoMatch, true},
		{"admin role administers", role("ExampleAdminRole"), "kms:PutKeyPolicy", nil, "", Allow, true},
		{"admin role Delete*", role("ExampleAdminRole"), "kms:DeleteAlias", nil, "", Allow, true},
		{"admin role Get*", role("ExampleAdminRole"), "kms:GetKeyRotationStatus", nil, "", Allow, true},
		{"admin role cannot encrypt by the key policy alone", role("ExampleAdminRole"), "kms:Encrypt", nil, "", NoMatch, true},
		{"admin session administers", session("ExampleAdminRole", "ops"), "kms:DisableKey", nil, "", Allow, true},
		{"user role encrypts", role("ExampleUserRole"), "kms:Encrypt", nil, "", Allow, true},
		{"user role session ReEncryptFrom", session("ExampleUserRole", "app-1"), "kms:ReEncryptFrom", nil, "", Allow, true},
		{"user role GenerateDataKeyPairWithoutPlaintext", session("ExampleUserRole", "app-1"), "kms:GenerateDataKeyPairWithoutPlaintext", nil, "", Allow, true},
		{"user role cannot administer", role("ExampleUserRole"), "kms:PutKeyPolicy", nil, "", NoMatch, true},
		{"user role grant for an AWS resource", role("ExampleUserRole"), "kms:CreateGrant", forAWS, "", Allow, true},
		{"user role grant not for an AWS resource", role("ExampleUserRole"), "kms:CreateGrant", notForAWS, "", NoMatch, true},
		{"user role grant, key absent", role("ExampleUserRole"), "kms:CreateGrant", nil, "", NoMatch, true},
		{"another account's user gets nothing", otherUser, "kms:Decrypt", nil, "", NoMatch, false},
		{"another account's root gets nothing", otherRoot, "kms:Decrypt", nil, "", NoMatch, false},
		{"a same-named role in another account", "arn:aws:iam::444455556666:role/ExampleUserRole", "kms:Encrypt", nil, "", NoMatch, false},
		{"a same-named role session in another account", "arn:aws:sts::444455556666:assumed-role/ExampleUserRole/x", "kms:Encrypt", nil, "", NoMatch, false},
	})
}

func TestGuideDefaultKeyPolicy(t *testing.T) {
	doc := DefaultKeyPolicy(acct)
	p := mustParse(t, doc)
	if p.ID != "key-default-1" || p.Version != "2012-10-17" || p.Statements() != 1 {
		t.Fatalf("default policy: Id %q Version %q, %d statements", p.ID, p.Version, p.Statements())
	}
	// The guide's GetKeyPolicy answer for the default policy, but for the Id.
	guide := `{
  "Version" : "2012-10-17",
  "Id" : "key-consolepolicy-3",
  "Statement" : [ {
    "Sid" : "Enable IAM User Permissions",
    "Effect" : "Allow",
    "Principal" : {
      "AWS" : "arn:aws:iam::111122223333:root"
    },
    "Action" : "kms:*",
    "Resource" : "*"
  } ]
}`
	if got, want := doc, strings.Replace(guide, "key-consolepolicy-3", "key-default-1", 1); got != want {
		t.Errorf("DefaultKeyPolicy:\n%s\nwant the guide's text:\n%s", got, want)
	}
	cases := []guideCase{
		{"root", root, "kms:PutKeyPolicy", nil, "", Allow, false},
		{"user: IAM decides", alice, "kms:Encrypt", nil, "", NoMatch, true},
		{"role session: IAM decides", session("app", "s"), "kms:GenerateDataKey", nil, "", NoMatch, true},
		{"other account", otherUser, "kms:Encrypt", nil, "", NoMatch, false},
		{"other account root", otherRoot, "kms:Encrypt", nil, "", NoMatch, false},
		{"not a kms action", root, "s3:GetObject", nil, "", NoMatch, false},
	}
	runGuide(t, p, cases)
	runGuide(t, mustParse(t, guide), cases)
}

func TestGuideKeyUsersWithOtherAccount(t *testing.T) {
	p := mustParse(t, wrap(`{
  "Sid": "Allow use of the key",
  "Effect": "Allow",
  "Principal": {"AWS": [
    "arn:aws:iam::111122223333:role/ExampleRole",
    "arn:aws:iam::444455556666:root"
  ]},
  "Action": [
    "kms:Encrypt",
    "kms:Decrypt",
    "kms:ReEncrypt*",
    "kms:GenerateDataKey*",
    "kms:DescribeKey"
  ],
  "Resource": "*"
}`, `{
  "Sid": "Allow attachment of persistent resources",
  "Effect": "Allow",
  "Principal": {"AWS": [
    "arn:aws:iam::111122223333:role/ExampleRole",
    "arn:aws:iam::444455556666:root"
  ]},
  "Action": [
    "kms:CreateGrant",
    "kms:ListGrants",
    "kms:RevokeGrant"
  ],
  "Resource": "*",
  "Condition": {"Bool": {"kms:GrantIsForAWSResource": true}}
}`))
	runGuide(t, p, []guideCase{
		{"key user role", role("ExampleRole"), "kms:Decrypt", nil, "", Allow, false},
		{"other account's user: its IAM decides", otherUser, "kms:Decrypt", nil, "", NoMatch, true},
		{"other account's root", otherRoot, "kms:Encrypt", nil, "", Allow, false},
		{"other account grant for AWS resource", otherUser, "kms:CreateGrant", ctx{"kms:grantisforawsresource": {"true"}}, "", NoMatch, true},
		{"other account direct grant", otherUser, "kms:CreateGrant", ctx{"kms:grantisforawsresource": {"false"}}, "", NoMatch, false},
		{"key owner's account is not named", alice, "kms:Decrypt", nil, "", NoMatch, false},
		{"no admin rights", role("ExampleRole"), "kms:ScheduleKeyDeletion", nil, "", NoMatch, false},
	})
}

func TestGuideConsoleKeyUserStatements(t *testing.T) {
	// Symmetric, HMAC, asymmetric encryption and signing variants.
	p := mustParse(t, wrap(`{
  "Sid": "Allow use of the key",
  "Effect": "Allow",
  "Principal": {"AWS": "arn:aws:iam::111122223333:role/ExampleKeyUserRole"},
  "Action": [
    "kms:DescribeKey",
    "kms:GenerateMac",
    "kms:VerifyMac"
  ],
  "Resource": "*"
}`, `{
  "Sid": "Allow use of the key for signing",
  "Effect": "Allow",
  "Principal": {"AWS": "arn:aws:iam::111122223333:role/ExampleKeyUserRole"},
  "Action": [
    "kms:DescribeKey",
    "kms:GetPublicKey",
    "kms:Sign",
    "kms:Verify"
  ],
  "Resource": "*"
}`))
	runGuide(t, p, []guideCase{
		{"GenerateMac", role("ExampleKeyUserRole"), "kms:GenerateMac", nil, "", Allow, false},
		{"Verify", session("ExampleKeyUserRole", "x"), "kms:Verify", nil, "", Allow, false},
		{"Encrypt not listed", role("ExampleKeyUserRole"), "kms:Encrypt", nil, "", NoMatch, false},
		{"prefix is not a wildcard", role("ExampleKeyUserRole"), "kms:SignExtra", nil, "", NoMatch, false},
	})
}

func TestGuideLocationViaServiceCallerAccountContext(t *testing.T) {
	p := mustParse(t, wrap(`{
  "Sid": "Allow Amazon Location to create grants on behalf of authorized users",
  "Effect": "Allow",
  "Principal": {
    "AWS": "arn:aws:iam::111122223333:role/LocationTeam"
  },
  "Action": "kms:CreateGrant",
  "Resource": "*",
  "Condition": {
    "StringEquals": {
      "kms:ViaService": "geo.us-west-2.amazonaws.com",
      "kms:CallerAccount": "111122223333",
      "kms:EncryptionContext:aws:geo:arn": "arn:aws:geo:us-west-2:111122223333:tracker/SAMPLE-Tracker"
    }
  }
}`))
	good := ctx{
		"kms:viaservice":                    {"geo.us-west-2.amazonaws.com"},
		"kms:calleraccount":                 {acct},
		"kms:encryptioncontext:aws:geo:arn": {"arn:aws:geo:us-west-2:111122223333:tracker/SAMPLE-Tracker"},
		"kms:encryptioncontextkeys":         {"aws:geo:arn"},
		"kms:grantoperations":               {"Decrypt"},
		"kms:grantisforawsresource":         {"true"},
	}
	without := func(k string) ctx {
		c := ctx{}
		for kk, v := range good {
			if kk != k {
				c[kk] = v
			}
		}
		return c
	}
	runGuide(t, p, []guideCase{
		{"all three hold", role("LocationTeam"), "kms:CreateGrant", good, "", Allow, false},
		{"not via Location", role("LocationTeam"), "kms:CreateGrant", without("kms:viaservice"), "", NoMatch, false},
		{"no caller account", role("LocationTeam"), "kms:CreateGrant", without("kms:calleraccount"), "", NoMatch, false},
		{"no tracker context", role("LocationTeam"), "kms:CreateGrant", without("kms:encryptioncontext:aws:geo:arn"), "", NoMatch, false},
		{"other tracker", role("LocationTeam"), "kms:CreateGrant", ctx{"kms:viaservice": {"geo.us-west-2.amazonaws.com"}, "kms:calleraccount": {acct}, "kms:encryptioncontext:aws:geo:arn": {"arn:aws:geo:us-west-2:111122223333:tracker/Other"}}, "", NoMatch, false},
		{"other action", role("LocationTeam"), "kms:Decrypt", good, "", NoMatch, false},
	})
}

func TestGuideCloudTrailServicePrincipal(t *testing.T) {
	p := mustParse(t, `{
  "Version": "2012-10-17",
  "Statement": [
    {
      "Sid": "Allow CloudTrail to encrypt logs",
      "Effect": "Allow",
      "Principal": {
        "Service": "cloudtrail.amazonaws.com"
      },
      "Action": "kms:GenerateDataKey",
      "Resource": "*",
      "Condition": {
        "ArnEquals": {
          "aws:SourceArn": [
        "arn:aws:cloudtrail:us-west-2:111122223333:trail/finance"
    ]
  },
  "StringLike": {
    "kms:EncryptionContext:aws:cloudtrail:arn": [
      "arn:aws:cloudtrail:*:111122223333:trail/*"
    ]
  }
}
}
]
}`)
	finance := ctx{
		"aws:sourcearn": {"arn:aws:cloudtrail:us-west-2:111122223333:trail/finance"},
		"kms:encryptioncontext:aws:cloudtrail:arn": {"arn:aws:cloudtrail:us-west-2:111122223333:trail/finance"},
	}
	hr := ctx{
		"aws:sourcearn": {"arn:aws:cloudtrail:us-west-2:111122223333:trail/hr"},
		"kms:encryptioncontext:aws:cloudtrail:arn": {"arn:aws:cloudtrail:us-west-2:111122223333:trail/hr"},
	}
	foreign := ctx{
		"aws:sourcearn": {"arn:aws:cloudtrail:us-west-2:111122223333:trail/finance"},
		"kms:encryptioncontext:aws:cloudtrail:arn": {"arn:aws:cloudtrail:us-west-2:444455556666:trail/finance"},
	}
	runGuide(t, p, []guideCase{
		{"CloudTrail for the finance trail", "cloudtrail.amazonaws.com", "kms:GenerateDataKey", finance, "", Allow, false},
		{"CloudTrail for another trail", "cloudtrail.amazonaws.com", "kms:GenerateDataKey", hr, "", NoMatch, false},
		{"context from another account", "cloudtrail.amazonaws.com", "kms:GenerateDataKey", foreign, "", NoMatch, false},
		{"another service", "s3.amazonaws.com", "kms:GenerateDataKey", finance, "", NoMatch, false},
		{"an IAM user is not the service", alice, "kms:GenerateDataKey", finance, "", NoMatch, false},
	})
}

func TestGuideEBSCallerAccountViaService(t *testing.T) {
	p := mustParse(t, wrap(`{
  "Sid": "Allow access through EBS for all principals in the account that are authorized to use EBS",
  "Effect": "Allow",
  "Principal": {"AWS": "*"},
  "Condition": {
    "StringEquals": {
      "kms:CallerAccount": "111122223333",
      "kms:ViaService": "ec2.us-west-2.amazonaws.com"
    }
  },
  "Action": [
    "kms:Encrypt",
    "kms:Decrypt",
    "kms:ReEncrypt*",
    "kms:GenerateDataKey*",
    "kms:CreateGrant",
    "kms:DescribeKey"
  ],
  "Resource": "*"
}`))
	via := func(acc, svc string) ctx { return ctx{"kms:calleraccount": {acc}, "kms:viaservice": {svc}} }
	runGuide(t, p, []guideCase{
		{"account user via EBS", alice, "kms:Decrypt", via(acct, "ec2.us-west-2.amazonaws.com"), "", Allow, false},
		{"account user directly", alice, "kms:Decrypt", ctx{"kms:calleraccount": {acct}}, "", NoMatch, false},
		{"account user via another service", alice, "kms:Decrypt", via(acct, "s3.us-west-2.amazonaws.com"), "", NoMatch, false},
		{"other account via EBS", otherUser, "kms:Decrypt", via("444455556666", "ec2.us-west-2.amazonaws.com"), "", NoMatch, false},
		{"action not listed", alice, "kms:ScheduleKeyDeletion", via(acct, "ec2.us-west-2.amazonaws.com"), "", NoMatch, false},
	})
}

func TestGuideEncryptionContext(t *testing.T) {
	r := role("RoleForExampleApp")
	ec := func(pairs ...string) ctx {
		c := ctx{}
		for i := 0; i+1 < len(pairs); i += 2 {
			k := pairs[i]
			c["kms:encryptioncontext:"+strings.ToLower(k)] = append(c["kms:encryptioncontext:"+strings.ToLower(k)], pairs[i+1])
			c["kms:encryptioncontextkeys"] = append(c["kms:encryptioncontextkeys"], k)
		}
		return c
	}
	t.Run("require AppName=ExampleApp", func(t *testing.T) {
		p := mustParse(t, wrap(`{
  "Effect": "Allow",
  "Principal": {
    "AWS": "arn:aws:iam::111122223333:role/RoleForExampleApp"
  },
  "Action": "kms:GenerateDataKey",
  "Resource": "*",
  "Condition": {
    "StringEquals": {
      "kms:EncryptionContext:AppName": "ExampleApp"
    }
  }
}`))
		runGuide(t, p, []guideCase{
			{"pair present", r, "kms:GenerateDataKey", ec("AppName", "ExampleApp"), "", Allow, false},
			{"other pairs allowed too", r, "kms:GenerateDataKey", ec("AppName", "ExampleApp", "Stage", "Test"), "", Allow, false},
			{"key case does not matter", r, "kms:GenerateDataKey", ec("appname", "ExampleApp"), "", Allow, false},
			{"value case matters", r, "kms:GenerateDataKey", ec("AppName", "exampleapp"), "", NoMatch, false},
			{"no context", r, "kms:GenerateDataKey", nil, "", NoMatch, false},
		})
	})
	t.Run("require AppName and nothing else", func(t *testing.T) {
		p := mustParse(t, wrap(`{
  "Effect": "Allow",
  "Principal": {
    "AWS": "arn:aws:iam::111122223333:role/KeyUsers"
  },
  "Action": "kms:GenerateDataKey",
  "Resource": "*",
  "Condition": {
    "StringEquals": {
      "kms:EncryptionContext:AppName": "ExampleApp"
    },
    "ForAllValues:StringEquals": {
      "kms:EncryptionContextKeys": [
        "AppName"
      ]
    }
  }
}`))
		u := role("KeyUsers")
		runGuide(t, p, []guideCase{
			{"only AppName", u, "kms:GenerateDataKey", ec("AppName", "ExampleApp"), "", Allow, false},
			{"extra pair refused", u, "kms:GenerateDataKey", ec("AppName", "ExampleApp", "Stage", "Test"), "", NoMatch, false},
			{"no context refused", u, "kms:GenerateDataKey", nil, "", NoMatch, false},
		})
	})
	t.Run("deny Stage=Restricted or Production", func(t *testing.T) {
		p := mustParse(t, wrap(`{
  "Effect": "Allow",
  "Principal": {
    "AWS": "arn:aws:iam::111122223333:role/RoleForExampleApp"
  },
  "Action": "kms:GenerateDataKey",
  "Resource": "*"
}`, `{
  "Effect": "Deny",
  "Principal": {
    "AWS": "arn:aws:iam::111122223333:role/RoleForExampleApp"
  },
  "Action": "kms:GenerateDataKey",
  "Resource": "*",
  "Condition": {
    "StringEquals": {
      "kms:EncryptionContext:Stage": [
        "Restricted",
        "Production"
      ]
    }
  }
}`))
		runGuide(t, p, []guideCase{
			{"Stage=Test allowed", r, "kms:GenerateDataKey", ec("Stage", "Test"), "", Allow, false},
			{"Stage=Restricted denied", r, "kms:GenerateDataKey", ec("Stage", "Restricted"), "", Deny, false},
			{"Stage=Production denied", session("RoleForExampleApp", "s"), "kms:GenerateDataKey", ec("Stage", "Production", "AppName", "x"), "", Deny, false},
			{"no context allowed", r, "kms:GenerateDataKey", nil, "", Allow, false},
		})
	})
	t.Run("Department=IT or Project=Alpha", func(t *testing.T) {
		p := mustParse(t, wrap(`{
  "Effect": "Allow",
  "Principal": {
    "AWS": "arn:aws:iam::111122223333:role/RoleForExampleApp"
  },
"Action": "kms:GenerateDataKey",
"Resource": "*",
"Condition": {
  "StringEquals": {
    "kms:EncryptionContext:Department": "IT"
  }
}
}`, `{
  "Effect": "Allow",
  "Principal": {
    "AWS": "arn:aws:iam::111122223333:role/RoleForExampleApp"
  },
  "Action": "kms:GenerateDataKey",
  "Resource": "*",
  "Condition": {
    "StringEquals": {
      "kms:EncryptionContext:Project": "Alpha"
    }
  }
}`))
		runGuide(t, p, []guideCase{
			{"Department=IT", r, "kms:GenerateDataKey", ec("Department", "IT"), "", Allow, false},
			{"Project=Alpha", r, "kms:GenerateDataKey", ec("Project", "Alpha"), "", Allow, false},
			{"neither", r, "kms:GenerateDataKey", ec("Project", "Beta"), "", NoMatch, false},
		})
	})
	t.Run("Department=IT and Project=Alpha only", func(t *testing.T) {
		p := mustParse(t, wrap(`{
  "Effect": "Allow",
  "Principal": {
    "AWS": "arn:aws:iam::111122223333:role/RoleForExampleApp"
  },
  "Action": "kms:GenerateDataKey",
  "Resource": "*",
  "Condition": {
    "StringEquals": {
    "kms:EncryptionContext:Department": "IT",
    "kms:EncryptionContext:Project": "Alpha"
  },
  "ForAllValues:StringEquals": {
    "kms:EncryptionContextKeys": [
      "Department",
      "Project"
    ]
  }
}
}`))
		runGuide(t, p, []guideCase{
			{"both", r, "kms:GenerateDataKey", ec("Department", "IT", "Project", "Alpha"), "", Allow, false},
			{"one", r, "kms:GenerateDataKey", ec("Department", "IT"), "", NoMatch, false},
			{"both and more", r, "kms:GenerateDataKey", ec("Department", "IT", "Project", "Alpha", "x", "y"), "", NoMatch, false},
		})
	})
	t.Run("EncryptionContextKeys ForAnyValue and Null", func(t *testing.T) {
		p := mustParse(t, wrap(`{
  "Effect": "Allow",
  "Principal": {
    "AWS": "arn:aws:iam::111122223333:role/RoleForExampleApp"
  },
  "Action": [
    "kms:Encrypt",
    "kms:GenerateDataKey*"
  ],
  "Resource": "*",
  "Condition": {
    "ForAnyValue:StringEquals": {
      "kms:EncryptionContextKeys": "AppName"
    }
  }
}`, `{
  "Effect": "Allow",
  "Principal": {
    "AWS": "arn:aws:iam::111122223333:role/RoleForExampleApp"
  },
  "Action": [
    "kms:Decrypt"
  ],
  "Resource": "*",
  "Condition": {
    "Null": {
      "kms:EncryptionContextKeys": false
    }
  }
}`))
		runGuide(t, p, []guideCase{
			{"AppName among keys", r, "kms:GenerateDataKey", ec("AppName", "Helper", "Project", "Alpha"), "", Allow, false},
			{"keys are case-sensitive", r, "kms:Encrypt", ec("appname", "Helper"), "", NoMatch, false},
			{"only Project", r, "kms:GenerateDataKeyWithoutPlaintext", ec("Project", "Alpha"), "", NoMatch, false},
			{"no context", r, "kms:Encrypt", nil, "", NoMatch, false},
			{"Decrypt with any context", r, "kms:Decrypt", ec("x", "y"), "", Allow, false},
			{"Decrypt without context", r, "kms:Decrypt", nil, "", NoMatch, false},
		})
	})
	t.Run("ForAllValues on a context key is refused", func(t *testing.T) {
		_, err := Parse(wrap(`{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111122223333:role/R"},"Action":"kms:Decrypt","Resource":"*",
  "Condition":{"ForAllValues:StringEquals":{"kms:EncryptionContext:Department":"IT"}}}`))
		wantErr(t, err, CodeMalformed, "OverlyPermissiveCondition")
	})
}

func TestGuidePolicyVariableContext(t *testing.T) {
	p := mustParse(t, wrap(`{
"Effect": "Allow",
"Principal": {
  "AWS": "arn:aws:iam::111122223333:role/TestTeam"
},
"Action": [
  "kms:Decrypt",
  "kms:Encrypt"
],
"Resource": "*",
"Condition": {
  "StringEquals": {
    "kms:EncryptionContext:user": "${aws:username}"
  }
}
}`))
	tt := session("TestTeam", "bob")
	runGuide(t, p, []guideCase{
		{"bob's own data", tt, "kms:Decrypt", ctx{"aws:username": {"bob"}, "kms:encryptioncontext:user": {"bob"}}, "", Allow, false},
		{"alice's data", tt, "kms:Decrypt", ctx{"aws:username": {"bob"}, "kms:encryptioncontext:user": {"alice"}}, "", NoMatch, false},
		{"no user name", tt, "kms:Decrypt", ctx{"kms:encryptioncontext:user": {"bob"}}, "", NoMatch, false},
	})
}

func TestGuideGrants(t *testing.T) {
	p := mustParse(t, wrap(`{
"Effect": "Allow",
"Principal": {
  "AWS": "arn:aws:iam::111122223333:role/ExampleRole"
},
"Action": "kms:CreateGrant",
"Resource": "*",
"Condition": {
  "Bool": {
    "kms:GrantIsForAWSResource": true
  }
}
}`, `{
  "Effect": "Allow",
  "Principal": {
    "AWS": "arn:aws:iam::111122223333:role/GrantRole"
  },
  "Action": "kms:CreateGrant",
  "Resource": "*",
  "Condition": {
    "ForAllValues:StringEquals": {
      "kms:GrantOperations": [
        "Encrypt",
        "ReEncryptTo"
      ]
    }
  }
}`, `{
  "Effect": "Allow",
  "Principal": {
    "AWS": "arn:aws:iam::111122223333:role/DelegatingRole"
  },
  "Action": "kms:CreateGrant",
  "Resource": "*",
  "Condition": {
    "StringEquals": {
      "kms:GranteePrincipal": "arn:aws:iam::111122223333:role/LimitedAdminRole"
    }
  }
}`))
	ops := func(o ...string) ctx { return ctx{"kms:grantoperations": o} }
	runGuide(t, p, []guideCase{
		{"for an AWS resource", role("ExampleRole"), "kms:CreateGrant", ctx{"kms:grantisforawsresource": {"true"}}, "", Allow, false},
		{"not for an AWS resource", role("ExampleRole"), "kms:CreateGrant", ctx{"kms:grantisforawsresource": {"false"}}, "", NoMatch, false},
		{"Encrypt only", role("GrantRole"), "kms:CreateGrant", ops("Encrypt"), "", Allow, false},
		{"Encrypt and ReEncryptTo", role("GrantRole"), "kms:CreateGrant", ops("ReEncryptTo", "Encrypt"), "", Allow, false},
		{"Decrypt too", role("GrantRole"), "kms:CreateGrant", ops("Encrypt", "Decrypt"), "", NoMatch, false},
		{"grantee is LimitedAdminRole", role("DelegatingRole"), "kms:CreateGrant", ctx{"kms:granteeprincipal": {role("LimitedAdminRole")}}, "", Allow, false},
		{"grantee is another role", role("DelegatingRole"), "kms:CreateGrant", ctx{"kms:granteeprincipal": {role("Other")}}, "", NoMatch, false},
	})
}

func TestGuideAliases(t *testing.T) {
	t.Run("RequestAlias", func(t *testing.T) {
		p := mustParse(t, wrap(`{
  "Sid": "Key policy using a request alias condition",
  "Effect": "Allow",
  "Principal": {
    "AWS": "arn:aws:iam::111122223333:role/developer"
  },
  "Action": "kms:GenerateDataKey",
  "Resource": "*",
  "Condition": {
    "StringEquals": {
      "kms:RequestAlias": "alias/finance-key"
    }
  }
}`, `{
  "Sid": "Key policy using a request alias pattern",
  "Effect": "Allow",
  "Principal": {
    "AWS": "arn:aws:iam::111122223333:role/alpha-developer"
  },
  "Action": [
    "kms:Decrypt",
    "kms:GenerateDataKey*",
    "kms:DescribeKey"
  ],
  "Resource": "*",
  "Condition": {
    "StringLike": {
      "kms:RequestAlias": "alias/*alpha*"
    }
  }
}`))
		runGuide(t, p, []guideCase{
			{"by alias", role("developer"), "kms:GenerateDataKey", ctx{"kms:requestalias": {"alias/finance-key"}}, "", Allow, false},
			{"by key id", role("developer"), "kms:GenerateDataKey", nil, "", NoMatch, false},
			{"by another alias", role("developer"), "kms:GenerateDataKey", ctx{"kms:requestalias": {"alias/finance"}}, "", NoMatch, false},
			{"alias pattern", role("alpha-developer"), "kms:DescribeKey", ctx{"kms:requestalias": {"alias/project-alpha"}}, "", Allow, false},
			{"alias pattern miss", role("alpha-developer"), "kms:DescribeKey", ctx{"kms:requestalias": {"alias/project-beta"}}, "", NoMatch, false},
		})
	})
	t.Run("ResourceAliases identity policies", func(t *testing.T) {
		p, err := ParseIdentity(`{
  "Version": "2012-10-17",
  "Statement": [
    {
      "Sid": "AliasBasedIAMPolicy",
      "Effect": "Allow",
      "Action": "kms:GenerateDataKey",
      "Resource": [
        "arn:aws:kms:*:111122223333:key/*",
        "arn:aws:kms:*:444455556666:key/*"
      ],
      "Condition": {
        "ForAnyValue:StringEquals": {
          "kms:ResourceAliases": "alias/finance-key"
        }
      }
    },
    {
      "Sid": "AliasBasedIAMPolicyTest",
      "Effect": "Allow",
      "Action": [
        "kms:EnableKey",
        "kms:DisableKey"
      ],
      "Resource": "arn:aws:kms:*:111122223333:key/*",
      "Condition": {
        "ForAllValues:StringLike": {
          "kms:ResourceAliases": [
            "alias/*Test*"
          ]
        },
        "ForAnyValue:StringLike": {
          "kms:ResourceAliases": [
            "alias/*Test*"
          ]
        }
      }
    }
  ]
}`)
		if err != nil {
			t.Fatal(err)
		}
		other := "arn:aws:kms:eu-west-1:444455556666:key/k"
		third := "arn:aws:kms:eu-west-1:777788889999:key/k"
		al := func(a ...string) ctx { return ctx{"kms:resourcealiases": a} }
		runGuide(t, p, []guideCase{
			{"key with the alias", alice, "kms:GenerateDataKey", al("alias/x", "alias/finance-key"), "", Allow, false},
			{"key in the other account", alice, "kms:GenerateDataKey", al("alias/finance-key"), other, Allow, false},
			{"key in a third account", alice, "kms:GenerateDataKey", al("alias/finance-key"), third, NoMatch, false},
			{"key without the alias", alice, "kms:GenerateDataKey", al("alias/x"), "", NoMatch, false},
			{"key without aliases", alice, "kms:GenerateDataKey", nil, "", NoMatch, false},
			{"all aliases Test", alice, "kms:DisableKey", al("alias/Test1", "alias/myTest"), "", Allow, false},
			{"one alias not Test", alice, "kms:DisableKey", al("alias/Test1", "alias/prod"), "", NoMatch, false},
			{"no alias: ForAnyValue fails", alice, "kms:EnableKey", nil, "", NoMatch, false},
		})
	})
}

func TestGuideViaService(t *testing.T) {
	p := mustParse(t, wrap(`{
  "Effect": "Allow",
  "Principal": {
    "AWS": "arn:aws:iam::111122223333:role/ExampleRole"
  },
  "Action": [
    "kms:Encrypt",
    "kms:Decrypt",
    "kms:ReEncrypt*",
    "kms:GenerateDataKey*",
    "kms:CreateGrant",
    "kms:ListGrants",
    "kms:DescribeKey"
  ],
  "Resource": "*",
  "Condition": {
    "StringEquals": {
      "kms:ViaService": [
        "ec2.us-west-2.amazonaws.com",
        "rds.us-west-2.amazonaws.com"
      ]
    }
  }
}`, `{
  "Effect": "Deny",
  "Principal": {
    "AWS": "arn:aws:iam::111122223333:role/ExampleRole"
  },
  "Action": [
    "kms:Encrypt"
  ],
  "Resource": "*",
  "Condition": {
    "StringEquals": {
      "kms:ViaService": [
        "lambda.us-west-2.amazonaws.com"
      ]
    }
  }
}`))
	via := func(s string) ctx { return ctx{"kms:viaservice": {s}} }
	runGuide(t, p, []guideCase{
		{"via EC2", role("ExampleRole"), "kms:Encrypt", via("ec2.us-west-2.amazonaws.com"), "", Allow, false},
		{"via RDS", role("ExampleRole"), "kms:Decrypt", via("rds.us-west-2.amazonaws.com"), "", Allow, false},
		{"directly", role("ExampleRole"), "kms:Decrypt", nil, "", NoMatch, false},
		{"via Lambda denied", role("ExampleRole"), "kms:Encrypt", via("lambda.us-west-2.amazonaws.com"), "", Deny, false},
		{"Lambda decrypt not denied, not allowed", role("ExampleRole"), "kms:Decrypt", via("lambda.us-west-2.amazonaws.com"), "", NoMatch, false},
	})
}

func TestGuideSourceIp(t *testing.T) {
	p := mustParse(t, `{
  "Version": "2012-10-17",
  "Statement": {
"Effect": "Allow",
"Principal": {"AWS":
"arn:aws:iam::111122223333:role/KMSTestRole"},
"Action": [
  "kms:Encrypt",
  "kms:Decrypt",
  "kms:ReEncrypt*",
  "kms:GenerateDataKey*",
  "kms:DescribeKey"
],
"Resource": "*",
"Condition": {
  "NotIpAddress": {
    "aws:SourceIp": [
      "192.0.2.0/24",
      "203.0.113.0/24"
    ]
  }
}
}
}`)
	ip := func(a string) ctx { return ctx{"aws:sourceip": {a}} }
	runGuide(t, p, []guideCase{
		{"outside the listed blocks", role("KMSTestRole"), "kms:Encrypt", ip("198.51.100.4"), "", Allow, false},
		{"inside a listed block", role("KMSTestRole"), "kms:Encrypt", ip("203.0.113.9"), "", NoMatch, false},
		{"IPv6 caller", role("KMSTestRole"), "kms:Encrypt", ip("2001:db8::1"), "", Allow, false},
	})
	// The usual form: deny from outside the corporate ranges.
	d := mustParse(t, wrap(`{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111122223333:root"},"Action":"kms:*","Resource":"*"}`,
		`{"Effect":"Deny","Principal":"*","Action":"kms:*","Resource":"*","Condition":{"NotIpAddress":{"aws:SourceIp":["192.0.2.0/24","2001:db8::/32"]}}}`))
	runGuide(t, d, []guideCase{
		{"root from inside", root, "kms:Decrypt", ip("192.0.2.10"), "", Allow, false},
		{"user from inside v6", alice, "kms:Decrypt", ip("2001:db8::10"), "", NoMatch, true},
		{"root from outside", root, "kms:Decrypt", ip("198.51.100.1"), "", Deny, false},
		{"user from outside", alice, "kms:Decrypt", ip("198.51.100.1"), "", Deny, false},
	})
}

func TestGuideBypassPolicyLockoutSafetyCheck(t *testing.T) {
	p := mustParse(t, wrap(`{
  "Effect": "Allow",
  "Principal": {"AWS": "arn:aws:iam::111122223333:role/KeyAdmin"},
  "Action": "kms:PutKeyPolicy",
  "Resource": "*",
  "Condition": {
    "Null": {
      "kms:BypassPolicyLockoutSafetyCheck": true
    }
  }
}`))
	runGuide(t, p, []guideCase{
		{"without the parameter", role("KeyAdmin"), "kms:PutKeyPolicy", nil, "", Allow, false},
		{"with the parameter", role("KeyAdmin"), "kms:PutKeyPolicy", ctx{"kms:bypasspolicylockoutsafetycheck": {"true"}}, "", NoMatch, false},
	})
	// The guide's IAM policy form (no Principal).
	ip, err := ParseIdentity(`{"Version":"2012-10-17","Statement":{
  "Effect": "Deny",
  "Action": [
    "kms:CreateKey",
    "kms:PutKeyPolicy"
  ],
  "Resource": "*",
  "Condition": {
    "Bool": {
      "kms:BypassPolicyLockoutSafetyCheck": true
    }
  }
}}`)
	if err != nil {
		t.Fatal(err)
	}
	runGuide(t, ip, []guideCase{
		{"bypass denied", alice, "kms:CreateKey", ctx{"kms:bypasspolicylockoutsafetycheck": {"true"}}, "*", Deny, false},
		{"no bypass", alice, "kms:CreateKey", ctx{"kms:bypasspolicylockoutsafetycheck": {"false"}}, "*", NoMatch, false},
	})
}

func TestGuideIdentityPolicyResources(t *testing.T) {
	p, err := ParseIdentity(`{
  "Version": "2012-10-17",
  "Statement": [
    {
"Sid": "ReadOnlyAccessForAllKMSKeysInAccount",
"Effect": "Allow",
"Action": [
  "kms:GetPublicKey",
  "kms:GetKeyRotationStatus",
  "kms:GetKeyPolicy",
  "kms:DescribeKey",
  "kms:ListKeyPolicies",
  "kms:ListResourceTags",
  "tag:GetResources"
],
"Resource": "arn:aws:kms:*:111122223333:key/*"
},
{
  "Effect": "Allow",
  "Action": [
    "kms:ListKeys",
    "kms:ListAliases"
  ],
  "Resource": "*"
}
]
}`)
	if err != nil {
		t.Fatal(err)
	}
	runGuide(t, p, []guideCase{
		{"describe a key of the account", alice, "kms:DescribeKey", nil, "", Allow, false},
		{"describe a key elsewhere", alice, "kms:DescribeKey", nil, "arn:aws:kms:us-west-2:444455556666:key/k", NoMatch, false},
		{"list keys", alice, "kms:ListKeys", nil, "*", Allow, false},
		{"a key ARN pattern does not cover account-level *", alice, "kms:DescribeKey", nil, "*", NoMatch, false},
		{"decrypt not granted", alice, "kms:Decrypt", nil, "", NoMatch, false},
	})
}

func TestGuideTypoRejected(t *testing.T) {
	// The guide prints the admin statement's "kms:Delete*" as "kms>Delete*";
	// IAM refuses an action without a vendor prefix.
	_, err := Parse(wrap(`{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111122223333:role/ExampleAdminRole"},"Action":["kms:Get*","kms>Delete*"],"Resource":"*"}`))
	wantErr(t, err, CodeMalformed, "prefaced by a vendor")
}
