//go:build kmsdtest

package agent

import (
	"bytes"
	"context"
	"encoding/base64"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
)

// recorder is a reverse proxy in front of a Region that keeps the body of
// every request through it.
type recorder struct {
	mu      sync.Mutex
	bodies  [][]byte
	targets []string
}

func newRecorder(t *testing.T, target string) (*recorder, string) {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	rec := &recorder{}
	rp := httputil.NewSingleHostReverseProxy(u)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		rec.mu.Lock()
		rec.bodies = append(rec.bodies, b)
		rec.targets = append(rec.targets, r.Header.Get("X-Amz-Target"))
		rec.mu.Unlock()
		r.Body = io.NopCloser(bytes.NewReader(b))
		rp.ServeHTTP(w, r) // Host stays the proxy's: it is what the caller signed
	}))
	t.Cleanup(srv.Close)
	return rec, srv.URL
}

// TestMultiRegionNoPlaintextOnWire records every cluster-to-cluster request
// of a replication, a rotation sync and a primary-Region change, and looks
// for the key material (every version, exposed by a test-only HSM hook)
// in their bodies, raw and base64.
func TestMultiRegionNoPlaintextOnWire(t *testing.T) {
	rs := newRegions(t, "us-east-1", "us-west-2")
	east, west := rs[0], rs[1]
	toWest, westURL := newRecorder(t, west.url)
	toEast, eastURL := newRecorder(t, east.url)
	east.SetPeers([]Peer{{Region: "us-west-2", URL: westURL, Key: west.admin}})
	west.SetPeers([]Peer{{Region: "us-east-1", URL: eastURL, Key: east.admin}})
	ctx := context.Background()

	ck, err := east.client.CreateKey(ctx, &kms.CreateKeyInput{MultiRegion: aws.Bool(true)})
	if err != nil {
		t.Fatal(err)
	}
	id := *ck.KeyMetadata.KeyId
	if _, err := east.client.ReplicateKey(ctx, &kms.ReplicateKeyInput{KeyId: &id, ReplicaRegion: aws.String("us-west-2")}); err != nil {
		t.Fatal(err)
	}
	east.tick(t)
	if _, err := east.client.RotateKeyOnDemand(ctx, &kms.RotateKeyOnDemandInput{KeyId: &id}); err != nil {
		t.Fatal(err)
	}
	east.tick(t)
	if _, err := east.client.UpdatePrimaryRegion(ctx, &kms.UpdatePrimaryRegionInput{KeyId: &id, PrimaryRegion: aws.String("us-west-2")}); err != nil {
		t.Fatal(err)
	}
	if _, err := west.client.RotateKeyOnDemand(ctx, &kms.RotateKeyOnDemandInput{KeyId: &id}); err != nil {
		t.Fatal(err)
	}
	west.tick(t)
	east.tick(t)
	encryptIn(t, west, east, id)

	var secrets [][]byte
	for _, rn := range rs {
		k, _ := rn.node.Key(id)
		if len(k.Materials) != 3 {
			t.Fatalf("%s holds %d material versions", rn.region, len(k.Materials))
		}
		for _, m := range k.Materials {
			pt, err := rn.pool.UnsafeExportForTest(ctx, m.Wrapped)
			if err != nil || len(pt) != 32 {
				t.Fatalf("export: %v", err)
			}
			secrets = append(secrets, pt, []byte(base64.StdEncoding.EncodeToString(pt)))
		}
	}
	// The same material on both sides, under different domain keys.
	ke, _ := east.node.Key(id)
	kw, _ := west.node.Key(id)
	for i := range ke.Materials {
		if bytes.Equal(ke.Materials[i].Wrapped, kw.Materials[i].Wrapped) {
			t.Fatal("both Regions store the same wrapped blob: the domain keys are shared and the test proves nothing")
		}
		if !bytes.Equal(secrets[2*i], secrets[2*(len(ke.Materials)+i)]) {
			t.Fatalf("material version %d differs between the Regions", i+1)
		}
	}
	seen := map[string]int{}
	for _, rec := range []*recorder{toWest, toEast} {
		rec.mu.Lock()
		for i, b := range rec.bodies {
			seen[strings.TrimPrefix(rec.targets[i], clusterPrefix)]++
			for _, s := range secrets {
				if bytes.Contains(b, s) {
					t.Errorf("key material in plaintext in a %s request body", rec.targets[i])
				}
			}
		}
		rec.mu.Unlock()
	}
	for _, op := range []string{"MrkTransportKey", "MrkCreateReplica", "MrkSync"} {
		if seen[op] == 0 {
			t.Errorf("no %s call was recorded (saw %v): the scan missed the traffic", op, seen)
		}
	}
}
