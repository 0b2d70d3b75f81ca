package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"text/tabwriter"
	"time"

	"github.com/kmsd/kmsd/agent"
)

const clusterUsage = `usage: kmsd cluster <status|remove ID> [--endpoint URL] [--credentials FILE] [--region R]
       kmsd snapshot <save|restore> FILE [--endpoint URL] [--credentials FILE] [--region R]
`

// runSnapshot is `kmsd snapshot save FILE` and `kmsd snapshot restore FILE`.
func runSnapshot(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || (args[0] != "save" && args[0] != "restore") {
		fmt.Fprint(stderr, clusterUsage)
		return 2
	}
	return runCluster(ctx, append([]string{"snapshot-" + args[0]}, args[1:]...), stdout, stderr)
}

// runCluster is `kmsd cluster status` and `kmsd cluster remove ID`: admin
// calls to any node's API, signed with the account root's credentials.
func runCluster(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, clusterUsage)
		return 2
	}
	sub, args := args[0], args[1:]
	ac := newAdminCommand("kmsd cluster "+sub, stderr)
	endpoint, region := ac.endpoint, ac.region
	pos, key, code := ac.parse(args)
	if code >= 0 {
		return code
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	switch sub {
	case "status":
		var st agent.StatusResponse
		if err := agent.CallCluster(ctx, *endpoint, *region, key, "Status", struct{}{}, &st); err != nil {
			fmt.Fprintf(stderr, "kmsd cluster status: %v\n", err)
			return 1
		}
		fmt.Fprintf(stdout, "node %s, leader %s, applied index %d\n", st.NodeID, st.Leader, st.AppliedIndex)
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "NODE\tROLE\tRAFT\tAPI\tREADY\tHEALTH")
		for _, m := range st.Members {
			role := "follower"
			if m.Leader {
				role = "leader"
			} else if !m.Voter {
				role = "nonvoter"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%v\t%s\n", m.NodeID, role, m.RaftAddr, m.APIURL, m.Ready, m.Health)
		}
		tw.Flush()
		return 0
	case "snapshot-save", "snapshot-restore":
		if len(pos) != 1 {
			fmt.Fprint(stderr, clusterUsage)
			return 2
		}
		file := pos[0]
		if sub == "snapshot-save" {
			var snap agent.SnapshotData
			if err := agent.CallCluster(ctx, *endpoint, *region, key, "SnapshotSave", struct{}{}, &snap); err != nil {
				fmt.Fprintf(stderr, "kmsd snapshot save: %v\n", err)
				return 1
			}
			if err := writeFileAtomic(file, snap.Snapshot, 0o600); err != nil {
				fmt.Fprintf(stderr, "kmsd snapshot save: %v\n", err)
				return 1
			}
			fmt.Fprintf(stdout, "saved %d bytes to %s\n", len(snap.Snapshot), file)
			return 0
		}
		data, err := os.ReadFile(file)
		if err != nil {
			fmt.Fprintf(stderr, "kmsd snapshot restore: %v\n", err)
			return 1
		}
		if err := agent.CallCluster(ctx, *endpoint, *region, key, "SnapshotRestore", agent.SnapshotData{Snapshot: data}, nil); err != nil {
			fmt.Fprintf(stderr, "kmsd snapshot restore: %v\n", err)
			return 1
		}
		fmt.Fprintf(stdout, "restored the cluster's state from %s\n", file)
		return 0
	case "remove":
		if len(pos) != 1 {
			fmt.Fprint(stderr, clusterUsage)
			return 2
		}
		if err := agent.CallCluster(ctx, *endpoint, *region, key, "Remove", map[string]string{"NodeId": pos[0]}, nil); err != nil {
			fmt.Fprintf(stderr, "kmsd cluster remove: %v\n", err)
			return 1
		}
		fmt.Fprintf(stdout, "removed %s\n", pos[0])
		return 0
	}
	fmt.Fprint(stderr, clusterUsage)
	return 2
}

// adminCommand is what every admin subcommand (cluster, snapshot,
// credentials) shares: flags naming a node and the account root's
// credentials, and positional arguments before or after them.
type adminCommand struct {
	name                    string
	fs                      *flag.FlagSet
	stderr                  io.Writer
	endpoint, creds, region *string
}

func newAdminCommand(name string, stderr io.Writer) *adminCommand {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return &adminCommand{
		name: name, fs: fs, stderr: stderr,
		endpoint: fs.String("endpoint", "http://127.0.0.1:4599", "API `URL` of any node"),
		creds:    fs.String("credentials", "./data/credentials", "AWS credentials `file` of the account root"),
		region:   fs.String("region", "us-east-1", "region of the cluster"),
	}
}

// parse parses args and reads the credentials. code is -1 to go on, else
// the exit code to return (0 for -h).
func (a *adminCommand) parse(args []string) (pos []string, key agent.AccessKey, code int) {
	for {
		if err := a.fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, key, 0
			}
			return nil, key, 2
		}
		if a.fs.NArg() == 0 {
			break
		}
		pos, args = append(pos, a.fs.Arg(0)), a.fs.Args()[1:]
	}
	key, err := readCredentials(*a.creds)
	if err != nil {
		fmt.Fprintf(a.stderr, "%s: --credentials: %v\n", a.name, err)
		return nil, key, 1
	}
	return pos, key, -1
}
