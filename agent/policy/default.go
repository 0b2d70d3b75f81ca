package policy

// DefaultKeyPolicy returns the default key policy KMS gives a key created
// without one (the guide's "Enable IAM User Permissions" statement): the
// account has full access to the key, and its identity policies decide
// which of its users and roles may use it. The text is formatted as
// GetKeyPolicy returns it.
func DefaultKeyPolicy(account string) string {
	return `{
  "Version" : "2012-10-17",
  "Id" : "key-default-1",
  "Statement" : [ {
    "Sid" : "Enable IAM User Permissions",
    "Effect" : "Allow",
    "Principal" : {
      "AWS" : "arn:aws:iam::` + account + `:root"
    },
    "Action" : "kms:*",
    "Resource" : "*"
  } ]
}`
}
