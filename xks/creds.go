package xks

import (
	"bufio"
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base32"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// CheckCredential checks an access key id and secret against the KMS
// API's patterns for XksProxyAuthenticationCredential: the id is 20 to 30
// of A-Z and 2-7, the secret 43 to 64 of A-Z a-z 0-9 + / =.
func CheckCredential(id, secret string) error {
	if len(id) < 20 || len(id) > 30 {
		return fmt.Errorf("access key id must be 20 to 30 characters (got %d)", len(id))
	}
	for i := 0; i < len(id); i++ {
		if c := id[i]; !(c >= 'A' && c <= 'Z' || c >= '2' && c <= '7') {
			return errors.New("access key id may hold only A-Z and 2-7")
		}
	}
	if len(secret) < 43 || len(secret) > 64 {
		return fmt.Errorf("secret access key must be 43 to 64 characters (got %d)", len(secret))
	}
	for i := 0; i < len(secret); i++ {
		if c := secret[i]; !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '+' || c == '/' || c == '=') {
			return errors.New("secret access key may hold only A-Z a-z 0-9 + / =")
		}
	}
	return nil
}

// NewCredential makes a random access key id (26 characters of A-Z 2-7,
// 128 bits) and secret (Base64 of 32 random bytes, 256 bits).
func NewCredential() (id, secret string) {
	var a [16]byte
	var b [32]byte
	_, _ = rand.Read(a[:])
	_, _ = rand.Read(b[:])
	id = base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(a[:])
	secret = base64.StdEncoding.EncodeToString(b[:])
	return id, secret
}

// ReadCredentials reads an AWS shared credentials file and returns every
// profile's aws_access_key_id and aws_secret_access_key (so two profiles
// let a rotation overlap). Profiles with a missing or invalid pair are an
// error naming the profile.
func ReadCredentials(path string) (map[string]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	type pair struct{ id, secret string }
	profiles := map[string]*pair{}
	var order []string
	cur := ""
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' || line[0] == ';' {
			continue
		}
		if line[0] == '[' && line[len(line)-1] == ']' {
			cur = strings.TrimSpace(line[1 : len(line)-1])
			if profiles[cur] == nil {
				profiles[cur] = &pair{}
				order = append(order, cur)
			}
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok || cur == "" {
			continue
		}
		switch strings.TrimSpace(k) {
		case "aws_access_key_id":
			profiles[cur].id = strings.TrimSpace(v)
		case "aws_secret_access_key":
			profiles[cur].secret = strings.TrimSpace(v)
		}
	}
	out := map[string]string{}
	for _, name := range order {
		p := profiles[name]
		if err := CheckCredential(p.id, p.secret); err != nil {
			return nil, fmt.Errorf("%s: profile [%s]: %w", path, name, err)
		}
		out[p.id] = p.secret
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no credentials", path)
	}
	return out, nil
}

// WriteCredentials writes a shared credentials file with one [default]
// profile, mode 0600, atomically.
func WriteCredentials(path, id, secret string) error {
	data := fmt.Sprintf("[default]\naws_access_key_id = %s\naws_secret_access_key = %s\n", id, secret)
	return writeAtomic(path, []byte(data), 0o600)
}

func writeAtomic(path string, data []byte, mode os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if err := f.Chmod(mode); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}

// SelfSignedCert loads certPath and keyPath, or, when certPath does not
// exist, makes an ECDSA P-256 certificate for hosts (DNS names or IP
// addresses) valid for ten years and writes it there (the key with mode
// 0600). Clients trust certPath as a CA (kmsd serve --xks-ca-file).
func SelfSignedCert(certPath, keyPath string, hosts []string) (tls.Certificate, error) {
	if _, err := os.Stat(certPath); err == nil {
		return tls.LoadX509KeyPair(certPath, keyPath)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return tls.Certificate{}, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "kmsd xks-proxy"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.AddDate(10, 0, 0),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else if h != "" {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, err
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return tls.Certificate{}, err
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
	if err := writeAtomic(keyPath, keyPEM, 0o600); err != nil {
		return tls.Certificate{}, err
	}
	if err := writeAtomic(certPath, certPEM, 0o644); err != nil {
		return tls.Certificate{}, err
	}
	return tls.X509KeyPair(certPEM, keyPEM)
}
