package hsmpool_test

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/kmsd/kmsd/hsmpool"
	"github.com/kmsd/kmsd/hsmpool/hsmtest"
)

// fuzzPool is shared by every FuzzOpen input in the process.
var fuzzPool struct {
	once    sync.Once
	p       *hsmpool.Pool
	wrapped []byte
}

func FuzzOpen(f *testing.F) {
	fuzzPool.once.Do(func() {
		lib, label, pin := hsmtest.NewToken(f)
		p, err := hsmpool.New(hsmpool.Config{Lib: lib, TokenLabel: label, PIN: pin})
		if err != nil {
			f.Fatal(err)
		}
		if _, err := p.EnsureDomainKey(context.Background()); err != nil {
			f.Fatal(err)
		}
		w, err := p.GenerateWrappedKey(context.Background())
		if err != nil {
			f.Fatal(err)
		}
		fuzzPool.p, fuzzPool.wrapped = p, w // never closed: lives for the process
	})
	p, w := fuzzPool.p, fuzzPool.wrapped
	if p == nil {
		f.Skip("no pool")
	}
	good, err := p.Seal(context.Background(), w, []byte("seed plaintext"), []byte("aad"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good, []byte("aad"), false)
	f.Add(good, []byte("aad"), true)
	f.Add(good[:27], []byte(nil), false)
	f.Add(good[:28], []byte("aad"), false)
	f.Add([]byte{}, []byte{}, false)
	f.Add(make([]byte, 64), []byte("aad"), true)
	f.Fuzz(func(t *testing.T, sealed, aad []byte, asWrapped bool) {
		wrapped := w
		if asWrapped {
			// Also feed the bytes in as a wrapped key.
			wrapped = sealed
		}
		pt, err := p.Open(context.Background(), wrapped, sealed, aad)
		if err != nil {
			if !errors.Is(err, hsmpool.ErrAuthFailed) {
				t.Fatalf("Open: %v; want nil or ErrAuthFailed", err)
			}
			if pt != nil {
				t.Fatal("plaintext returned with an error")
			}
		}
	})
}
