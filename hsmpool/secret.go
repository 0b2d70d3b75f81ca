package hsmpool

import (
	"context"
	"crypto/subtle"
	"fmt"

	"github.com/miekg/pkcs11"
)

// keyKind is what a wrapped key is unwrapped as.
type keyKind uint8

const (
	kindAES        keyKind = iota // AES-256 for AES-GCM (Seal, Open)
	kindHMAC                      // generic secret for CKM_SHA*_HMAC (HMAC)
	kindRSASign                   // RSA private key, CKA_SIGN
	kindRSADecrypt                // RSA private key, CKA_DECRYPT
	kindECSign                    // EC private key, CKA_SIGN
	kindECDerive                  // EC private key, CKA_DERIVE
	kindEdSign                    // Ed25519 private key, CKA_SIGN

	kindLast = kindEdSign
)

// template is the unwrap template of the kind. exportable (test hook
// only) makes the object extractable and not sensitive.
func (k keyKind) template(exportable bool) []*pkcs11.Attribute {
	if k >= kindRSASign {
		return k.privateTemplate(exportable)
	}
	base := []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_SECRET_KEY),
		pkcs11.NewAttribute(pkcs11.CKA_TOKEN, false),
		pkcs11.NewAttribute(pkcs11.CKA_PRIVATE, true),
		pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, !exportable),
		pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, exportable),
	}
	if k == kindHMAC {
		return append(base,
			pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_GENERIC_SECRET),
			pkcs11.NewAttribute(pkcs11.CKA_SIGN, true),
			pkcs11.NewAttribute(pkcs11.CKA_VERIFY, true),
		)
	}
	return append(base,
		pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_AES),
		pkcs11.NewAttribute(pkcs11.CKA_ENCRYPT, true),
		pkcs11.NewAttribute(pkcs11.CKA_DECRYPT, true),
	)
}

// HMAC hash functions (HMAC's hash argument).
const (
	SHA224 = 224
	SHA256 = 256
	SHA384 = 384
	SHA512 = 512
)

func hmacMechanism(hash int) (uint, error) {
	switch hash {
	case SHA224:
		return pkcs11.CKM_SHA224_HMAC, nil
	case SHA256:
		return pkcs11.CKM_SHA256_HMAC, nil
	case SHA384:
		return pkcs11.CKM_SHA384_HMAC, nil
	case SHA512:
		return pkcs11.CKM_SHA512_HMAC, nil
	}
	return 0, fmt.Errorf("hsmpool: no HMAC with SHA-%d", hash)
}

// GenerateWrappedSecret generates an n-byte generic secret key (an HMAC
// key) inside the HSM and returns it wrapped by the domain key, as
// GenerateWrappedKey does for AES keys. Its plaintext never leaves the HSM.
func (p *Pool) GenerateWrappedSecret(ctx context.Context, n int) ([]byte, error) {
	if n < 16 || n > 128 {
		return nil, fmt.Errorf("hsmpool: GenerateWrappedSecret: size %d out of range 16..128", n)
	}
	return p.generateWrapped(ctx, "secret", pkcs11.CKM_GENERIC_SECRET_KEY_GEN, []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_GENERIC_SECRET),
		pkcs11.NewAttribute(pkcs11.CKA_VALUE_LEN, n),
		pkcs11.NewAttribute(pkcs11.CKA_SIGN, false),
		pkcs11.NewAttribute(pkcs11.CKA_VERIFY, false),
	})
}

// HMAC computes HMAC-SHA-hash of data in the HSM with the secret wrapped
// in wrapped (GenerateWrappedSecret). The unwrapped secret is a
// non-extractable session object cached like Seal's keys. A malformed or
// foreign wrapped key gives ErrAuthFailed.
func (p *Pool) HMAC(ctx context.Context, wrapped []byte, hash int, data []byte) ([]byte, error) {
	mech, err := hmacMechanism(hash)
	if err != nil {
		return nil, err
	}
	if ctx == nil {
		ctx = context.Background()
	}
	var out []byte
	err = p.withKeyKind(ctx, wrapped, kindHMAC, func(s *Session, e *keyEntry) error {
		if err := p.initSign(s, e, mech); err != nil {
			return fmt.Errorf("hsmpool: hmac: %w", err)
		}
		mac, err := s.ctx.Sign(s.handle, data)
		if err != nil {
			return fmt.Errorf("hsmpool: hmac: %w", err)
		}
		out = mac
		return nil
	})
	return out, err
}

// VerifyHMAC reports whether mac is the HMAC of data (see HMAC). The
// comparison takes constant time.
func (p *Pool) VerifyHMAC(ctx context.Context, wrapped []byte, hash int, data, mac []byte) (bool, error) {
	want, err := p.HMAC(ctx, wrapped, hash, data)
	if err != nil {
		return false, err
	}
	return subtle.ConstantTimeCompare(want, mac) == 1, nil
}

// initSign binds e's key to a sign operation on s (see initGCM).
func (p *Pool) initSign(s *Session, e *keyEntry, mech uint) error {
	p.genMu.RLock()
	defer p.genMu.RUnlock()
	if e.gen != p.gen {
		return errStale
	}
	return s.ctx.SignInit(s.handle, []*pkcs11.Mechanism{pkcs11.NewMechanism(mech, nil)}, e.h)
}
