package hsmpool

import (
	"context"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"fmt"
	"math/big"

	"github.com/miekg/pkcs11"
)

// Key material transfer between HSMs of different clusters (multi-Region
// keys). The receiving cluster's token holds one long-lived RSA-3072 peer
// transport key pair (PeerTransportKey; the private half is sensitive and
// never leaves the token). The sender unwraps a material blob (wrapped by
// its own domain key) into a short-lived session object and wraps it with
// RSA-OAEP for the receiver's public key inside its HSM (ExportMaterial);
// the receiver unwraps that with its private key into a session object and
// wraps it under its own domain key (ImportMaterial). The material exists in
// plaintext only inside the two HSMs; what travels and what is stored are
// RSA-OAEP and AES key-wrap outputs.

// peerTransportLabel names the peer transport key pair on a token.
const peerTransportLabel = "kmsd-peer-transport"

// PeerTransportKey returns the public half (DER SubjectPublicKeyInfo) of
// this token's peer transport key pair, generating the pair in the HSM on
// first use. It is safe for concurrent use, also across Pools of one
// process on the same token.
func (p *Pool) PeerTransportKey(ctx context.Context) ([]byte, error) {
	var out []byte
	err := p.Do(ctx, func(s *Session) error {
		p.mod.mu.Lock()
		defer p.mod.mu.Unlock()
		pub, ok, err := p.findTransport(s, pkcs11.CKO_PUBLIC_KEY)
		if err != nil {
			return err
		}
		if !ok {
			pubT := []*pkcs11.Attribute{
				pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true),
				pkcs11.NewAttribute(pkcs11.CKA_LABEL, peerTransportLabel),
				pkcs11.NewAttribute(pkcs11.CKA_WRAP, true),
				pkcs11.NewAttribute(pkcs11.CKA_ENCRYPT, true),
				pkcs11.NewAttribute(pkcs11.CKA_MODULUS_BITS, 3072),
				pkcs11.NewAttribute(pkcs11.CKA_PUBLIC_EXPONENT, []byte{1, 0, 1}),
			}
			privT := []*pkcs11.Attribute{
				pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true),
				pkcs11.NewAttribute(pkcs11.CKA_LABEL, peerTransportLabel),
				pkcs11.NewAttribute(pkcs11.CKA_PRIVATE, true),
				pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, true),
				pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, false),
				pkcs11.NewAttribute(pkcs11.CKA_UNWRAP, true),
				pkcs11.NewAttribute(pkcs11.CKA_DECRYPT, true),
			}
			pub, _, err = s.ctx.GenerateKeyPair(s.handle, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_RSA_PKCS_KEY_PAIR_GEN, nil)}, pubT, privT)
			if err != nil {
				return fmt.Errorf("hsmpool: generate peer transport key: %w", err)
			}
		}
		attrs, err := s.ctx.GetAttributeValue(s.handle, pub, []*pkcs11.Attribute{
			pkcs11.NewAttribute(pkcs11.CKA_MODULUS, nil), pkcs11.NewAttribute(pkcs11.CKA_PUBLIC_EXPONENT, nil)})
		if err != nil {
			return fmt.Errorf("hsmpool: read peer transport key: %w", err)
		}
		pk := &rsa.PublicKey{N: new(big.Int).SetBytes(attrs[0].Value), E: int(new(big.Int).SetBytes(attrs[1].Value).Int64())}
		out, err = x509.MarshalPKIXPublicKey(pk)
		return err
	})
	return out, err
}

// findTransport finds the peer transport key object of class class.
func (p *Pool) findTransport(s *Session, class uint) (pkcs11.ObjectHandle, bool, error) {
	if err := s.ctx.FindObjectsInit(s.handle, []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, class),
		pkcs11.NewAttribute(pkcs11.CKA_LABEL, peerTransportLabel),
		pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true)}); err != nil {
		return 0, false, fmt.Errorf("hsmpool: find peer transport key: %w", err)
	}
	objs, _, err := s.ctx.FindObjects(s.handle, 1)
	s.ctx.FindObjectsFinal(s.handle)
	if err != nil {
		return 0, false, fmt.Errorf("hsmpool: find peer transport key: %w", err)
	}
	if len(objs) == 0 {
		return 0, false, nil
	}
	return objs[0], true, nil
}

// ExportMaterial unwraps wrapped (key material wrapped by this token's
// domain key) into a session object and wraps it with RSA-OAEP for the
// peer transport public key pubDER (DER SubjectPublicKeyInfo, RSA of 2048
// bits or more), inside the HSM. A wrapped blob the domain key does not
// open gives ErrAuthFailed.
func (p *Pool) ExportMaterial(ctx context.Context, wrapped, pubDER []byte) ([]byte, error) {
	k, err := x509.ParsePKIXPublicKey(pubDER)
	if err != nil {
		return nil, fmt.Errorf("hsmpool: peer transport key: %w", err)
	}
	pk, ok := k.(*rsa.PublicKey)
	if !ok || pk.N.BitLen() < 2048 {
		return nil, errors.New("hsmpool: peer transport key must be RSA of 2048 bits or more")
	}
	if len(wrapped) < minWrapped || len(wrapped) > maxWrapped || len(wrapped)%8 != 0 {
		return nil, fmt.Errorf("%w: wrapped key has invalid length %d", ErrAuthFailed, len(wrapped))
	}
	var out []byte
	err = p.Do(ctx, func(s *Session) error {
		dk, err := p.domainKey(s.handle)
		if err != nil {
			return err
		}
		// Sensitive (its value can never be read), extractable only so that
		// C_WrapKey accepts it; it lives until this function returns.
		mk, err := s.ctx.UnwrapKey(s.handle, []*pkcs11.Mechanism{pkcs11.NewMechanism(p.wrapMech, nil)}, dk, wrapped, []*pkcs11.Attribute{
			pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_SECRET_KEY),
			pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_AES),
			pkcs11.NewAttribute(pkcs11.CKA_TOKEN, false),
			pkcs11.NewAttribute(pkcs11.CKA_PRIVATE, true),
			pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, true),
			pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, true),
			pkcs11.NewAttribute(pkcs11.CKA_ENCRYPT, false),
			pkcs11.NewAttribute(pkcs11.CKA_DECRYPT, false),
		})
		if err != nil {
			p.forgetDomainKey(err)
			if authFailure(err) {
				return fmt.Errorf("%w: wrapped key rejected (%v)", ErrAuthFailed, err)
			}
			return fmt.Errorf("hsmpool: unwrap material: %w", err)
		}
		defer p.destroyOrReset(s, mk)
		pub, err := s.ctx.CreateObject(s.handle, []*pkcs11.Attribute{
			pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_PUBLIC_KEY),
			pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_RSA),
			pkcs11.NewAttribute(pkcs11.CKA_TOKEN, false),
			pkcs11.NewAttribute(pkcs11.CKA_WRAP, true),
			pkcs11.NewAttribute(pkcs11.CKA_MODULUS, pk.N.Bytes()),
			pkcs11.NewAttribute(pkcs11.CKA_PUBLIC_EXPONENT, big.NewInt(int64(pk.E)).Bytes()),
		})
		if err != nil {
			return fmt.Errorf("hsmpool: import peer transport key: %w", err)
		}
		defer p.destroyOrReset(s, pub)
		var lastErr error
		for _, mech := range oaepMechanisms() {
			w, err := s.ctx.WrapKey(s.handle, mech, pub, mk)
			if err == nil {
				out = w
				return nil
			}
			lastErr = err
		}
		return fmt.Errorf("hsmpool: wrap material for peer: %w", lastErr)
	})
	return out, err
}

// ImportMaterial unwraps transported (ExportMaterial's output for this
// token's PeerTransportKey) with the peer transport private key into a
// session object and returns it wrapped by this token's domain key, the
// form GenerateWrappedKey returns. Anything the private key does not open
// gives ErrAuthFailed.
func (p *Pool) ImportMaterial(ctx context.Context, transported []byte) ([]byte, error) {
	if len(transported) == 0 || len(transported) > 1024 {
		return nil, fmt.Errorf("%w: transported key has invalid length %d", ErrAuthFailed, len(transported))
	}
	var out []byte
	err := p.Do(ctx, func(s *Session) error {
		dk, err := p.domainKey(s.handle)
		if err != nil {
			return err
		}
		priv, ok, err := p.findTransport(s, pkcs11.CKO_PRIVATE_KEY)
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("%w: this token has no peer transport key", ErrAuthFailed)
		}
		tmpl := []*pkcs11.Attribute{
			pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_SECRET_KEY),
			pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_AES),
			pkcs11.NewAttribute(pkcs11.CKA_TOKEN, false),
			pkcs11.NewAttribute(pkcs11.CKA_PRIVATE, true),
			pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, true),
			pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, true),
			pkcs11.NewAttribute(pkcs11.CKA_ENCRYPT, false),
			pkcs11.NewAttribute(pkcs11.CKA_DECRYPT, false),
		}
		mk, err := unwrapOAEP(s, priv, transported, tmpl)
		if err != nil {
			return fmt.Errorf("%w: unwrap transported material: %v", ErrAuthFailed, err)
		}
		defer p.destroyOrReset(s, mk)
		w, err := s.ctx.WrapKey(s.handle, []*pkcs11.Mechanism{pkcs11.NewMechanism(p.wrapMech, nil)}, dk, mk)
		if err != nil {
			p.forgetDomainKey(err)
			return fmt.Errorf("hsmpool: wrap material: %w", err)
		}
		out = w
		return nil
	})
	return out, err
}

// destroyOrReset destroys a session object; if that fails the session is
// reset (its objects die with it).
func (p *Pool) destroyOrReset(s *Session, h pkcs11.ObjectHandle) {
	if err := s.ctx.DestroyObject(s.handle, h); err != nil {
		s.reset = true
	}
}
