//go:build kmsdtest

package hsmpool

import (
	"context"
	"fmt"

	"github.com/miekg/pkcs11"
)

// UnsafeExportForTest unwraps wrapped as an extractable, non-sensitive
// session object and returns its CKA_VALUE: the plaintext key material.
// It exists only in builds with the kmsdtest tag, for tests that look for
// key material where it must not be (data directories, logs).
func (p *Pool) UnsafeExportForTest(ctx context.Context, wrapped []byte) ([]byte, error) {
	return p.unsafeExport(ctx, wrapped, kindAES)
}

// UnsafeExportSecretForTest is UnsafeExportForTest for a secret made by
// GenerateWrappedSecret.
func (p *Pool) UnsafeExportSecretForTest(ctx context.Context, wrapped []byte) ([]byte, error) {
	return p.unsafeExport(ctx, wrapped, kindHMAC)
}

// UnsafeExportPrivateForTest is UnsafeExportForTest for a private key made
// by GenerateWrappedKeyPair: CKA_VALUE is the private scalar of an EC key
// (RSA keys have no CKA_VALUE).
func (p *Pool) UnsafeExportPrivateForTest(ctx context.Context, wrapped []byte, spec KeyPairSpec) ([]byte, error) {
	kind, err := spec.kind()
	if err != nil {
		return nil, err
	}
	return p.unsafeExport(ctx, wrapped, kind)
}

func (p *Pool) unsafeExport(ctx context.Context, wrapped []byte, kind keyKind) ([]byte, error) {
	if ctx == nil {
		ctx = context.Background()
	}
	var out []byte
	err := p.retry(ctx, func() error {
		return p.Do(ctx, func(s *Session) error {
			h, err := p.unwrapKind(s.handle, wrapped, true, kind)
			if err != nil {
				return err
			}
			defer s.ctx.DestroyObject(s.handle, h)
			attrs, err := s.ctx.GetAttributeValue(s.handle, h, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_VALUE, nil)})
			if err != nil {
				return fmt.Errorf("hsmpool: read CKA_VALUE: %w", err)
			}
			if len(attrs) != 1 {
				return fmt.Errorf("hsmpool: read CKA_VALUE: %d attributes", len(attrs))
			}
			out = attrs[0].Value
			return nil
		})
	})
	return out, err
}
