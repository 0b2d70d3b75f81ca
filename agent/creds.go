package agent

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"encoding/base64"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/kmsd/kmsd/cluster"
)

// Names of system values in the replicated state.
const (
	metaCredentialKey = "credential-key"   // HSM-wrapped key that seals access-key secrets
	metaAdminKey      = "admin-access-key" // access key id of the account root
)

// AccessKey is an access key id and its secret.
type AccessKey struct {
	ID     string
	Secret string
}

// credCache holds unsealed access-key secrets in memory so SigV4 checks do
// not need the HSM. Secrets are sealed at rest (raft) by the HSM.
type credCache struct {
	s       *Server
	mu      sync.RWMutex
	secrets map[string][]byte
}

func (c *credCache) init(s *Server) {
	c.s = s
	c.secrets = map[string][]byte{}
}

// lookup returns the secret for an access key id, unsealing it on first
// use. It is the sigv4.Lookup of the server.
func (c *credCache) lookup(akid string) ([]byte, bool) {
	c.mu.RLock()
	sec, ok := c.secrets[akid]
	c.mu.RUnlock()
	if ok {
		return sec, true
	}
	cred, ok := c.s.node.Credential(akid)
	if !ok {
		return nil, false
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	sec, err := c.s.unsealSecret(ctx, cred)
	if err != nil {
		c.s.log.Error("unseal access key", "access_key_id", akid, "err", err)
		return nil, false
	}
	c.mu.Lock()
	c.secrets[akid] = sec
	c.mu.Unlock()
	return sec, true
}

// principal returns the principal of an access key that exists now; a
// deleted key's cached secret is dropped.
func (c *credCache) principal(akid string) (string, bool) {
	cred, ok := c.s.node.Credential(akid)
	if !ok {
		c.forget(akid)
		return "", false
	}
	return cred.Principal, true
}

// forget drops a cached secret.
func (c *credCache) forget(akid string) {
	c.mu.Lock()
	if sec, ok := c.secrets[akid]; ok {
		clear(sec)
		delete(c.secrets, akid)
	}
	c.mu.Unlock()
}

func credAAD(akid string) []byte { return []byte("kmsd/access-key/v1/" + akid) }

func (s *Server) unsealSecret(ctx context.Context, cred *cluster.Credential) ([]byte, error) {
	wk, ok := s.node.Meta(metaCredentialKey)
	if !ok {
		return nil, errors.New("agent: no credential key in state")
	}
	return s.pool.Open(ctx, wk, cred.SealedSecret, credAAD(cred.AccessKeyID))
}

// Init prepares a node's state: it waits for raft, makes the key that seals
// access-key secrets and the account root's access key if they do not exist
// yet, and marks the server ready. It returns the root's access key, which
// the caller writes to the credentials file.
func (s *Server) Init(ctx context.Context) (AccessKey, error) {
	if err := s.node.WaitReady(ctx); err != nil {
		return AccessKey{}, err
	}
	if _, ok := s.node.Meta(metaCredentialKey); !ok {
		wk, err := s.pool.GenerateWrappedKey(ctx)
		if err != nil {
			return AccessKey{}, fmt.Errorf("agent: credential key: %w", err)
		}
		if _, err := s.apply(ctx, &cluster.PutMeta{Name: metaCredentialKey, Value: wk}); err != nil {
			return AccessKey{}, err
		}
	}
	var admin AccessKey
	if id, ok := s.node.Meta(metaAdminKey); ok {
		cred, ok := s.node.Credential(string(id))
		if !ok {
			return AccessKey{}, fmt.Errorf("agent: admin access key %s missing from state", id)
		}
		sec, err := s.unsealSecret(ctx, cred)
		if err != nil {
			return AccessKey{}, fmt.Errorf("agent: unseal admin access key: %w", err)
		}
		admin = AccessKey{ID: cred.AccessKeyID, Secret: string(sec)}
	} else {
		k, err := s.CreateAccessKey(ctx, "arn:"+s.partition+":iam::"+s.cfg.AccountID+":root")
		if err != nil {
			return AccessKey{}, err
		}
		v, err := s.apply(ctx, &cluster.PutMeta{Name: metaAdminKey, Value: []byte(k.ID)})
		if err != nil {
			return AccessKey{}, err
		}
		if string(v.([]byte)) != k.ID {
			return AccessKey{}, errors.New("agent: another admin access key was created concurrently")
		}
		admin = k
	}
	if s.cfg.APIURL != "" {
		if m, ok := s.node.Member(s.node.ID()); !ok || m.APIURL != s.cfg.APIURL || m.RaftAddr != s.node.RaftAddr() {
			if _, err := s.apply(ctx, &cluster.PutMember{Member: cluster.Member{ID: s.node.ID(), RaftAddr: s.node.RaftAddr(), APIURL: s.cfg.APIURL}}); err != nil {
				return AccessKey{}, fmt.Errorf("agent: register member: %w", err)
			}
		}
	}
	s.readyMu.Lock()
	s.ready = true
	s.readyMu.Unlock()
	return admin, nil
}

// CreateAccessKey makes a new access key for principal (an ARN). The
// secret is returned once and stored only sealed by the HSM.
func (s *Server) CreateAccessKey(ctx context.Context, principal string) (AccessKey, error) {
	idb := make([]byte, 10)
	sec := make([]byte, 30)
	rand.Read(idb)
	rand.Read(sec)
	id := "AKIA" + base32.StdEncoding.EncodeToString(idb) // 16 chars, like AWS
	secret := base64.StdEncoding.EncodeToString(sec)      // 40 chars, like AWS
	clear(sec)
	wk, ok := s.node.Meta(metaCredentialKey)
	if !ok {
		return AccessKey{}, errors.New("agent: no credential key in state")
	}
	sealed, err := s.pool.Seal(ctx, wk, []byte(secret), credAAD(id))
	if err != nil {
		return AccessKey{}, err
	}
	cred := cluster.Credential{AccessKeyID: id, SealedSecret: sealed, Principal: principal, Created: s.cfg.Now().UnixNano()}
	if _, err := s.apply(ctx, &cluster.PutCredential{Credential: cred}); err != nil {
		return AccessKey{}, err
	}
	return AccessKey{ID: id, Secret: secret}, nil
}
