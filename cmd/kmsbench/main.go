// Command kmsbench drives a KMS endpoint (kmsd, a peer, or the in-process
// ideal twin with --ideal) with an operation mix and reports throughput and
// latency. See package bench for the load models and the report.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}
