package main

import (
	"context"
	"fmt"
	"io"
)

const usage = `usage: kmsd <command> [flags]

commands:
  serve     run a kmsd node (kmsd serve -h for flags)
  cluster   status | remove ID: administer a cluster through any node
  snapshot  save FILE | restore FILE: the replicated state (wrapped material only)
  credentials  create | list | delete: access keys of principals (account root only)
  k8s-kms-plugin  serve the Kubernetes KMS v2 API on a unix socket (kmsd k8s-kms-plugin -h)
  xks-proxy       serve the XKS Proxy API over a PKCS#11 token (kmsd xks-proxy -h)
  healthcheck     GET a node's /healthz (/readyz with --ready); exit 0 on 200, 1 otherwise
  job       encrypt | decrypt | reencrypt: bulk envelope encryption of files (kmsd job -h)
  version   print the version
`

var version = "dev"

// run is the whole program; main only wires the process to it.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch args[0] {
	case "serve":
		return runServe(ctx, args[1:], stdout, stderr)
	case "cluster":
		return runCluster(ctx, args[1:], stdout, stderr)
	case "snapshot":
		return runSnapshot(ctx, args[1:], stdout, stderr)
	case "credentials":
		return runCredentials(ctx, args[1:], stdout, stderr)
	case "k8s-kms-plugin":
		return runPlugin(ctx, args[1:], stdout, stderr)
	case "xks-proxy":
		return runXKSProxy(ctx, args[1:], stdout, stderr)
	case "healthcheck":
		return runHealthcheck(ctx, args[1:], stdout, stderr)
	case "job":
		return runJob(ctx, args[1:], stdout, stderr)
	case "version":
		fmt.Fprintln(stdout, "kmsd", version)
		return 0
	case "-h", "--help", "help":
		fmt.Fprint(stdout, usage)
		return 0
	}
	fmt.Fprintf(stderr, "kmsd: unknown command %q\n%s", args[0], usage)
	return 2
}
