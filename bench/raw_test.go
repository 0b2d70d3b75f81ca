package bench

import (
	"context"
	"testing"
	"time"
)

func TestRunRawIdeal(t *testing.T) {
	cfg := testConfig(newTestIdeal(t))
	cfg.Raw = true
	cfg.Mix = Mix{GenerateDataKey: 1, Decrypt: 1, Encrypt: 1, GenerateDataKeyWithoutPlaintext: 1}
	rep, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Requests == 0 || rep.Errors != 0 {
		t.Fatalf("raw run: %d requests, %d errors %v", rep.Requests, rep.Errors, rep.ErrorsByCode)
	}
	for _, op := range rep.Ops {
		if op.Requests == 0 {
			t.Errorf("raw run sent no %s", op.Op)
		}
	}
}

func TestRunRawErrors(t *testing.T) {
	cfg := testConfig(kmsErrorServer(t, 400, "ThrottlingException"))
	cfg.Raw, cfg.Mix, cfg.Warmup, cfg.MaxRequests = true, Mix{GenerateDataKey: 1}, 0, 20
	rep, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Errors != 20 || rep.ErrorsByCode["ThrottlingException"] != 20 {
		t.Fatalf("raw errors: %d %v", rep.Errors, rep.ErrorsByCode)
	}
	cfg.Duration = 5 * time.Minute
	if err := cfg.Validate(); err == nil {
		t.Fatal("a raw run longer than the signature window validated")
	}
}
