// Package hsmtest makes SoftHSM2 tokens and hsmpool.Pools for tests.
//
// The first call in a process creates a SoftHSM2 token directory under
// os.TempDir (it outlives single tests and is never removed), writes its
// config and sets SOFTHSM2_CONF, which SoftHSM2 reads at C_Initialize. Tests
// that call it are skipped when SoftHSM2 is not installed. Every token gets
// a unique label and random PINs, so tests in one process - and parallel
// test processes - never share a token.
package hsmtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kmsd/kmsd/hsmpool"
)

var (
	once    sync.Once
	modPath string
	skip    string
	failure error
	seq     atomic.Uint64
)

// Setup prepares the process-wide SoftHSM2 directory and returns the
// PKCS#11 module path. It skips t if SoftHSM2 is not installed.
func Setup(t testing.TB) (lib string) {
	t.Helper()
	once.Do(setup)
	if skip != "" {
		// make test sets KMSD_REQUIRE_HSM so that CI fails instead of
		// quietly skipping every test that needs the HSM.
		if os.Getenv("KMSD_REQUIRE_HSM") != "" {
			t.Fatal(skip)
		}
		t.Skip(skip)
	}
	if failure != nil {
		t.Fatalf("hsmtest: %v", failure)
	}
	return modPath
}

func setup() {
	l, err := hsmpool.FindSoftHSM()
	if err != nil {
		skip = "SoftHSM2 is not installed (apt-get install softhsm2): " + err.Error()
		return
	}
	dir, err := os.MkdirTemp("", "kmsd-softhsm-")
	if err != nil {
		failure = err
		return
	}
	conf, err := hsmpool.WriteSoftHSMConfig(dir)
	if err != nil {
		failure = err
		return
	}
	if err := os.Setenv("SOFTHSM2_CONF", conf); err != nil {
		failure = err
		return
	}
	modPath = l
}

// NewToken initializes a fresh token with a unique label and a random user
// PIN and returns what a hsmpool.Config needs to open it.
func NewToken(t testing.TB) (lib, label, pin string) {
	t.Helper()
	lib = Setup(t)
	label = fmt.Sprintf("kmsdtest-%d-%d", os.Getpid(), seq.Add(1))
	pin = randomHex(8)
	if err := hsmpool.InitToken(lib, label, randomHex(8), pin); err != nil {
		t.Fatalf("hsmtest: %v", err)
	}
	return lib, label, pin
}

// NewPool returns a Pool on a fresh token whose domain key exists. The
// pool is closed when t ends.
func NewPool(t testing.TB) *hsmpool.Pool {
	t.Helper()
	lib, label, pin := NewToken(t)
	p, err := hsmpool.New(hsmpool.Config{Lib: lib, TokenLabel: label, PIN: pin})
	if err != nil {
		t.Fatalf("hsmtest: %v", err)
	}
	t.Cleanup(func() {
		if err := p.Close(); err != nil {
			t.Errorf("hsmtest: close pool: %v", err)
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := p.EnsureDomainKey(ctx); err != nil {
		t.Fatalf("hsmtest: %v", err)
	}
	return p
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
