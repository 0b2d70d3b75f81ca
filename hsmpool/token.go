package hsmpool

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/miekg/pkcs11"
)

// softHSMPaths are the usual install locations of SoftHSM2's module.
var softHSMPaths = []string{
	"/usr/lib/softhsm/libsofthsm2.so",
	"/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
	"/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
	"/usr/local/lib/softhsm/libsofthsm2.so",
}

// FindSoftHSM returns the first SoftHSM2 PKCS#11 module found in the usual
// install locations.
func FindSoftHSM() (string, error) {
	for _, p := range softHSMPaths {
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() {
			return p, nil
		}
	}
	return "", fmt.Errorf("hsmpool: SoftHSM2 module not found (tried %s)", strings.Join(softHSMPaths, ", "))
}

// WriteSoftHSMConfig creates dir (0700), dir/tokens (0700) and
// dir/softhsm2.conf (0600) pointing SoftHSM2 at dir/tokens, and returns the
// absolute path of the config file. It is idempotent. The caller points
// SOFTHSM2_CONF at the returned path before the first New, InitToken or
// TokenExists in the process; this package never reads or sets the
// environment.
func WriteSoftHSMConfig(dir string) (confPath string, err error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", fmt.Errorf("hsmpool: softhsm config dir: %w", err)
	}
	tokens := filepath.Join(abs, "tokens")
	if err := os.MkdirAll(tokens, 0o700); err != nil {
		return "", fmt.Errorf("hsmpool: softhsm config: %w", err)
	}
	if err := os.Chmod(tokens, 0o700); err != nil {
		return "", fmt.Errorf("hsmpool: softhsm config: %w", err)
	}
	conf := filepath.Join(abs, "softhsm2.conf")
	want := []byte("# Written by kmsd (hsmpool.WriteSoftHSMConfig).\n" +
		"directories.tokendir = " + tokens + "\n" +
		"objectstore.backend = file\n" +
		"log.level = ERROR\n" +
		"slots.removable = false\n")
	if have, err := os.ReadFile(conf); err == nil && bytes.Equal(have, want) {
		if err := os.Chmod(conf, 0o600); err != nil {
			return "", fmt.Errorf("hsmpool: softhsm config: %w", err)
		}
		return conf, nil
	}
	// Write-then-rename so a concurrent reader never sees half a file.
	tmp, err := os.CreateTemp(abs, ".softhsm2.conf.*")
	if err != nil {
		return "", fmt.Errorf("hsmpool: softhsm config: %w", err)
	}
	_, werr := tmp.Write(want)
	cerr := tmp.Close()
	if err := errors.Join(werr, cerr, os.Chmod(tmp.Name(), 0o600)); err != nil {
		os.Remove(tmp.Name())
		return "", fmt.Errorf("hsmpool: softhsm config: %w", err)
	}
	if err := os.Rename(tmp.Name(), conf); err != nil {
		os.Remove(tmp.Name())
		return "", fmt.Errorf("hsmpool: softhsm config: %w", err)
	}
	return conf, nil
}

// InitToken initializes a token labelled label in a slot whose token is not
// initialized yet, sets its SO PIN to soPIN and its user PIN to userPIN. It
// fails if a token with that label already exists. It speaks PKCS#11 to lib
// (it does not run softhsm2-util) and is safe for concurrent use.
func InitToken(lib, label, soPIN, userPIN string) error {
	switch {
	case label == "":
		return errors.New("hsmpool: InitToken: label is required")
	case len(label) > maxTokenLabel:
		return fmt.Errorf("hsmpool: InitToken: label is longer than %d bytes", maxTokenLabel)
	case soPIN == "":
		return errors.New("hsmpool: InitToken: SO PIN is required")
	case userPIN == "":
		return errors.New("hsmpool: InitToken: user PIN is required")
	}
	m, err := acquireModule(lib)
	if err != nil {
		return err
	}
	defer m.release()
	m.mu.Lock()
	defer m.mu.Unlock()

	slots, err := m.ctx.GetSlotList(true)
	if err != nil {
		return fmt.Errorf("hsmpool: C_GetSlotList: %w", err)
	}
	var (
		slot  uint
		found bool
	)
	for _, s := range slots {
		ti, err := m.ctx.GetTokenInfo(s)
		if err != nil {
			continue
		}
		if ti.Flags&pkcs11.CKF_TOKEN_INITIALIZED == 0 {
			if !found {
				slot, found = s, true
			}
			continue
		}
		if ti.Label == label {
			return fmt.Errorf("hsmpool: InitToken: a token labelled %q already exists", label)
		}
	}
	if !found {
		return errors.New("hsmpool: InitToken: no slot with an uninitialized token")
	}
	if err := m.ctx.InitToken(slot, soPIN, label); err != nil {
		return fmt.Errorf("hsmpool: C_InitToken: %w", err)
	}
	sh, err := m.ctx.OpenSession(slot, pkcs11.CKF_SERIAL_SESSION|pkcs11.CKF_RW_SESSION)
	if err != nil {
		return fmt.Errorf("hsmpool: C_OpenSession: %w", err)
	}
	defer m.ctx.CloseSession(sh)
	if err := m.ctx.Login(sh, pkcs11.CKU_SO, soPIN); err != nil {
		return fmt.Errorf("hsmpool: SO login: %w", err)
	}
	defer m.ctx.Logout(sh)
	if err := m.ctx.InitPIN(sh, userPIN); err != nil {
		return fmt.Errorf("hsmpool: C_InitPIN: %w", err)
	}
	return nil
}

// TokenExists reports whether lib has an initialized token labelled label.
func TokenExists(lib, label string) (bool, error) {
	m, err := acquireModule(lib)
	if err != nil {
		return false, err
	}
	defer m.release()
	slots, err := m.ctx.GetSlotList(true)
	if err != nil {
		return false, fmt.Errorf("hsmpool: C_GetSlotList: %w", err)
	}
	for _, s := range slots {
		ti, err := m.ctx.GetTokenInfo(s)
		if err == nil && ti.Flags&pkcs11.CKF_TOKEN_INITIALIZED != 0 && ti.Label == label {
			return true, nil
		}
	}
	return false, nil
}
