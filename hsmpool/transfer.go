package hsmpool

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"math/big"

	"github.com/miekg/pkcs11"
)

// Domain-key transfer between HSM tokens (DESIGN.md §3): a node joining a
// cluster with a token of its own makes an RSA-3072 transport key pair in
// its token (the private half never leaves it), a member wraps the domain
// key for that public key with RSA-OAEP inside its HSM, and the joiner
// unwraps it inside its HSM. The domain key exists in plaintext only inside
// the two HSMs.
//
// This needs the domain key to be extractable under wrapping (it stays
// sensitive: its value can never be read). Keys made before transfer
// existed were made non-extractable; ExportDomainKey reports
// ErrNotExportable for them.

// ErrNotExportable is returned by ExportDomainKey for a domain key the
// token will not wrap.
var ErrNotExportable = errors.New("hsmpool: the domain key is not extractable; nodes must share this HSM token")

const transportLabelPrefix = "kmsd-transport-"

// oaepMechanisms are tried in order: SHA-256 OAEP, then SHA-1 OAEP (the only
// one some SoftHSM2 builds accept).
func oaepMechanisms() [][]*pkcs11.Mechanism {
	return [][]*pkcs11.Mechanism{
		{pkcs11.NewMechanism(pkcs11.CKM_RSA_PKCS_OAEP, pkcs11.NewOAEPParams(pkcs11.CKM_SHA256, pkcs11.CKG_MGF1_SHA256, pkcs11.CKZ_DATA_SPECIFIED, nil))},
		{pkcs11.NewMechanism(pkcs11.CKM_RSA_PKCS_OAEP, pkcs11.NewOAEPParams(pkcs11.CKM_SHA_1, pkcs11.CKG_MGF1_SHA1, pkcs11.CKZ_DATA_SPECIFIED, nil))},
	}
}

// GenerateTransportKey makes an RSA-3072 key pair on the token for
// receiving the domain key and returns its public half (DER
// SubjectPublicKeyInfo) and the label that names the pair.
func (p *Pool) GenerateTransportKey(ctx context.Context) (pubDER []byte, label string, err error) {
	rnd := make([]byte, 8)
	rand.Read(rnd)
	label = transportLabelPrefix + hex.EncodeToString(rnd)
	err = p.Do(ctx, func(s *Session) error {
		pubT := []*pkcs11.Attribute{
			pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true),
			pkcs11.NewAttribute(pkcs11.CKA_LABEL, label),
			pkcs11.NewAttribute(pkcs11.CKA_WRAP, true),
			pkcs11.NewAttribute(pkcs11.CKA_ENCRYPT, true),
			pkcs11.NewAttribute(pkcs11.CKA_MODULUS_BITS, 3072),
			pkcs11.NewAttribute(pkcs11.CKA_PUBLIC_EXPONENT, []byte{1, 0, 1}),
		}
		privT := []*pkcs11.Attribute{
			pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true),
			pkcs11.NewAttribute(pkcs11.CKA_LABEL, label),
			pkcs11.NewAttribute(pkcs11.CKA_PRIVATE, true),
			pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, true),
			pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, false),
			pkcs11.NewAttribute(pkcs11.CKA_UNWRAP, true),
			pkcs11.NewAttribute(pkcs11.CKA_DECRYPT, true),
		}
		pub, _, err := s.ctx.GenerateKeyPair(s.handle, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_RSA_PKCS_KEY_PAIR_GEN, nil)}, pubT, privT)
		if err != nil {
			return fmt.Errorf("hsmpool: generate transport key: %w", err)
		}
		attrs, err := s.ctx.GetAttributeValue(s.handle, pub, []*pkcs11.Attribute{
			pkcs11.NewAttribute(pkcs11.CKA_MODULUS, nil), pkcs11.NewAttribute(pkcs11.CKA_PUBLIC_EXPONENT, nil)})
		if err != nil {
			return fmt.Errorf("hsmpool: read transport public key: %w", err)
		}
		pk := &rsa.PublicKey{N: new(big.Int).SetBytes(attrs[0].Value), E: int(new(big.Int).SetBytes(attrs[1].Value).Int64())}
		pubDER, err = x509.MarshalPKIXPublicKey(pk)
		return err
	})
	return pubDER, label, err
}

// ExportDomainKey wraps the domain key for the RSA public key pubDER (DER
// SubjectPublicKeyInfo, 2048 bits or more) with RSA-OAEP inside the HSM.
func (p *Pool) ExportDomainKey(ctx context.Context, pubDER []byte) ([]byte, error) {
	k, err := x509.ParsePKIXPublicKey(pubDER)
	if err != nil {
		return nil, fmt.Errorf("hsmpool: transport public key: %w", err)
	}
	pk, ok := k.(*rsa.PublicKey)
	if !ok || pk.N.BitLen() < 2048 {
		return nil, errors.New("hsmpool: transport public key must be RSA of 2048 bits or more")
	}
	var out []byte
	err = p.Do(ctx, func(s *Session) error {
		dk, err := p.domainKey(s.handle)
		if err != nil {
			return err
		}
		ext, err := s.ctx.GetAttributeValue(s.handle, dk, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, nil)})
		if err != nil {
			return fmt.Errorf("hsmpool: read domain key attributes: %w", err)
		}
		if len(ext[0].Value) == 0 || ext[0].Value[0] == 0 {
			return ErrNotExportable
		}
		pub, err := s.ctx.CreateObject(s.handle, []*pkcs11.Attribute{
			pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_PUBLIC_KEY),
			pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_RSA),
			pkcs11.NewAttribute(pkcs11.CKA_TOKEN, false),
			pkcs11.NewAttribute(pkcs11.CKA_WRAP, true),
			pkcs11.NewAttribute(pkcs11.CKA_MODULUS, pk.N.Bytes()),
			pkcs11.NewAttribute(pkcs11.CKA_PUBLIC_EXPONENT, big.NewInt(int64(pk.E)).Bytes()),
		})
		if err != nil {
			return fmt.Errorf("hsmpool: import transport public key: %w", err)
		}
		defer s.ctx.DestroyObject(s.handle, pub)
		var lastErr error
		for _, mech := range oaepMechanisms() {
			w, err := s.ctx.WrapKey(s.handle, mech, pub, dk)
			if err == nil {
				out = w
				return nil
			}
			lastErr = err
		}
		return fmt.Errorf("hsmpool: wrap domain key: %w", lastErr)
	})
	return out, err
}

// ImportDomainKey unwraps a domain key exported for the transport key
// label (GenerateTransportKey) into this token, as the token's domain key,
// then destroys the transport key pair. The token must not hold a domain
// key yet.
func (p *Pool) ImportDomainKey(ctx context.Context, wrapped []byte, label string) error {
	return p.Do(ctx, func(s *Session) error {
		p.mod.mu.Lock()
		defer p.mod.mu.Unlock()
		p.dkMu.Lock()
		defer p.dkMu.Unlock()
		if _, ok, err := p.findDomainKey(s.handle); err != nil {
			return err
		} else if ok {
			return errors.New("hsmpool: the token already holds a domain key")
		}
		if err := s.ctx.FindObjectsInit(s.handle, []*pkcs11.Attribute{
			pkcs11.NewAttribute(pkcs11.CKA_LABEL, label), pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true)}); err != nil {
			return fmt.Errorf("hsmpool: find transport key: %w", err)
		}
		objs, _, err := s.ctx.FindObjects(s.handle, 4)
		s.ctx.FindObjectsFinal(s.handle)
		if err != nil {
			return fmt.Errorf("hsmpool: find transport key: %w", err)
		}
		var priv pkcs11.ObjectHandle
		found := false
		for _, o := range objs {
			a, err := s.ctx.GetAttributeValue(s.handle, o, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_CLASS, nil)})
			if err == nil && len(a[0].Value) > 0 && new(big.Int).SetBytes(reverse(a[0].Value)).Uint64() == pkcs11.CKO_PRIVATE_KEY {
				priv, found = o, true
			}
		}
		if !found {
			return fmt.Errorf("hsmpool: no transport key labelled %q", label)
		}
		tmpl := append(p.domainKeyTemplate(),
			pkcs11.NewAttribute(pkcs11.CKA_PRIVATE, true),
			pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, true),
			pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, true),
			pkcs11.NewAttribute(pkcs11.CKA_ENCRYPT, true),
			pkcs11.NewAttribute(pkcs11.CKA_DECRYPT, true),
			pkcs11.NewAttribute(pkcs11.CKA_WRAP, true),
			pkcs11.NewAttribute(pkcs11.CKA_UNWRAP, true),
		)
		h, err := unwrapOAEP(s, priv, wrapped, tmpl)
		if err != nil {
			return fmt.Errorf("%w: unwrap domain key: %v", ErrAuthFailed, err)
		}
		for _, o := range objs {
			s.ctx.DestroyObject(s.handle, o)
		}
		p.dk, p.dkSet = h, true
		return nil
	})
}

// unwrapOAEP unwraps blob with the RSA private key priv under RSA-OAEP,
// SHA-256 first, then SHA-1 (what the sender's token could do), into an
// object made from tmpl. The error is the last mechanism's.
func unwrapOAEP(s *Session, priv pkcs11.ObjectHandle, blob []byte, tmpl []*pkcs11.Attribute) (pkcs11.ObjectHandle, error) {
	var lastErr error
	for _, mech := range oaepMechanisms() {
		h, err := s.ctx.UnwrapKey(s.handle, mech, priv, blob, tmpl)
		if err == nil {
			return h, nil
		}
		lastErr = err
	}
	return 0, lastErr
}

// reverse returns b reversed (CK_ULONG attributes are little-endian here).
func reverse(b []byte) []byte {
	out := make([]byte, len(b))
	for i := range b {
		out[len(b)-1-i] = b[i]
	}
	return out
}
