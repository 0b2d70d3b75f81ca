package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"text/tabwriter"
	"time"

	"github.com/kmsd/kmsd/agent"
)

const credentialsUsage = `usage: kmsd credentials create --principal user/NAME|role/NAME|ARN [--policy FILE] [--via-service S] [--out FILE]
       kmsd credentials list
       kmsd credentials delete ACCESS_KEY_ID
common flags: [--endpoint URL] [--credentials FILE] [--region R]
`

// runCredentials is `kmsd credentials create|list|delete`: admin calls to
// any node's API, signed with the account root's credentials.
func runCredentials(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, credentialsUsage)
		return 2
	}
	sub, args := args[0], args[1:]
	ac := newAdminCommand("kmsd credentials "+sub, stderr)
	fs, endpoint, region := ac.fs, ac.endpoint, ac.region
	principal := fs.String("principal", "", "create: the principal (user/NAME, role/NAME or an IAM ARN of the account)")
	policyFile := fs.String("policy", "", "create: `file` holding the principal's identity policy (IAM policy JSON)")
	via := fs.String("via-service", "", "create: the kms:ViaService value of the principal's calls")
	out := fs.String("out", "", "create: write the new key as an AWS credentials `file` (mode 0600) instead of printing it")
	pos, key, code := ac.parse(args)
	if code >= 0 {
		return code
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	switch sub {
	case "create":
		if *principal == "" {
			fmt.Fprint(stderr, "kmsd credentials create: --principal is required\n"+credentialsUsage)
			return 2
		}
		in := agent.CreateCredentialRequest{Principal: *principal}
		if *policyFile != "" {
			b, err := os.ReadFile(*policyFile)
			if err != nil {
				fmt.Fprintf(stderr, "kmsd credentials create: --policy: %v\n", err)
				return 1
			}
			p := string(b)
			in.Policy = &p
		}
		if *via != "" {
			in.ViaService = via
		}
		var res agent.CreateCredentialResponse
		if err := agent.CallCluster(ctx, *endpoint, *region, key, "CreateCredential", in, &res); err != nil {
			fmt.Fprintf(stderr, "kmsd credentials create: %v\n", err)
			return 1
		}
		file := fmt.Sprintf("# kmsd access key of %s\n[default]\naws_access_key_id = %s\naws_secret_access_key = %s\n", res.Principal, res.AccessKeyID, res.SecretAccessKey)
		if *out != "" {
			if err := os.WriteFile(*out, []byte(file), 0o600); err != nil {
				fmt.Fprintf(stderr, "kmsd credentials create: --out: %v\n", err)
				return 1
			}
			fmt.Fprintf(stdout, "%s\t%s\n", res.AccessKeyID, res.Principal)
			return 0
		}
		fmt.Fprint(stdout, file)
		return 0
	case "list":
		var res agent.ListCredentialsResponse
		if err := agent.CallCluster(ctx, *endpoint, *region, key, "ListCredentials", struct{}{}, &res); err != nil {
			fmt.Fprintf(stderr, "kmsd credentials list: %v\n", err)
			return 1
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ACCESS KEY\tPRINCIPAL\tIDENTITY POLICY\tVIA SERVICE")
		for _, c := range res.Credentials {
			pol := "-"
			if c.Policy != "" {
				pol = fmt.Sprintf("%d bytes", len(c.Policy))
			}
			vs := c.ViaService
			if vs == "" {
				vs = "-"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", c.AccessKeyID, c.Principal, pol, vs)
		}
		tw.Flush()
		return 0
	case "delete":
		if len(pos) != 1 {
			fmt.Fprint(stderr, "kmsd credentials delete: one ACCESS_KEY_ID\n"+credentialsUsage)
			return 2
		}
		if err := agent.CallCluster(ctx, *endpoint, *region, key, "DeleteCredential", agent.DeleteCredentialRequest{AccessKeyID: pos[0]}, &struct{}{}); err != nil {
			fmt.Fprintf(stderr, "kmsd credentials delete: %v\n", err)
			return 1
		}
		fmt.Fprintf(stdout, "deleted %s\n", pos[0])
		return 0
	}
	fmt.Fprint(stderr, credentialsUsage)
	return 2
}
