package agent

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/kmsd/kmsd/cluster"
	"github.com/kmsd/kmsd/hsmpool"
	"github.com/kmsd/kmsd/xks"
)

// HSMStoreConfig is one PKCS#11 token that AWS_CLOUDHSM key stores may
// use, under the name a CreateCustomKeyStore request gives as
// CloudHsmClusterId. The request's KeyStorePassword is the token's user
// PIN (AWS's kmsuser password); its TrustAnchorCertificate must equal
// TrustAnchorPEM when that is set (AWS: the cluster's issuing CA).
type HSMStoreConfig struct {
	Lib            string // PKCS#11 module path
	TokenLabel     string // token selected by label unless SlotSet
	Slot           uint
	SlotSet        bool
	TrustAnchorPEM string
	Sessions       int // 0 = hsmpool's default
}

// hsmStores holds this node's open sessions on the tokens of connected
// AWS_CLOUDHSM key stores.
type hsmStores struct {
	mu sync.Mutex
	m  map[string]*hsmConn
}

type hsmConn struct {
	pool *hsmpool.Pool
	keys *xks.TokenKeys
	sum  [32]byte // hsmSum of the store settings it was opened with
}

// hsmSum fingerprints the settings a connection depends on, so a node
// drops a connection made before UpdateCustomKeyStore changed them.
func hsmSum(cs *cluster.CustomKeyStore) [32]byte {
	return sha256.Sum256([]byte(fmt.Sprintf("%d:%s;%x", len(cs.CloudHsmClusterID), cs.CloudHsmClusterID, cs.SealedPassword)))
}

func (h *hsmStores) get(id string) (*hsmConn, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	c, ok := h.m[id]
	return c, ok
}

func (h *hsmStores) put(id string, c *hsmConn) {
	h.mu.Lock()
	if h.m == nil {
		h.m = map[string]*hsmConn{}
	}
	old := h.m[id]
	h.m[id] = c
	h.mu.Unlock()
	if old != nil {
		_ = old.pool.Close()
	}
}

func (h *hsmStores) drop(id string) {
	h.mu.Lock()
	c := h.m[id]
	delete(h.m, id)
	h.mu.Unlock()
	if c != nil {
		_ = c.pool.Close()
	}
}

// closeAll closes every store session (Server.Close).
func (h *hsmStores) closeAll() {
	h.mu.Lock()
	m := h.m
	h.m = nil
	h.mu.Unlock()
	for _, c := range m {
		_ = c.pool.Close()
	}
}

func (h *hsmStores) deleteKey(ctx context.Context, id, label string) error {
	c, ok := h.get(id)
	if !ok {
		return errors.New("agent: HSM key store not connected on this node")
	}
	return c.keys.Delete(ctx, label)
}

func sameCert(a, b string) bool { return strings.TrimSpace(a) == strings.TrimSpace(b) }

func (s *Server) prepareHSMStore(r *request, cs *cluster.CustomKeyStore, clusterID, anchor, password *string) error {
	switch {
	case clusterID == nil:
		return validationRequired("cloudHsmClusterId")
	case anchor == nil:
		return validationRequired("trustAnchorCertificate")
	case password == nil:
		return validationRequired("keyStorePassword")
	case len(*clusterID) < 19 || len(*clusterID) > 24 || !reHsmCluster.MatchString(*clusterID):
		return apiErr(errValidation, "CloudHsmClusterId must match cluster-[2-7a-zA-Z]{11,16}.")
	case len(*anchor) < 1 || len(*anchor) > 5000:
		return validationLength("trustAnchorCertificate", 1, 5000)
	case len(*password) < 7 || len(*password) > 32:
		return validationLength("keyStorePassword", 7, 32)
	}
	hc, ok := s.cfg.HSMStores[*clusterID]
	if !ok {
		return apiErr(errHsmClusterNotFound, "kmsd is not configured with an HSM named %s (kmsd serve --hsm-store).", *clusterID)
	}
	if hc.TrustAnchorPEM != "" && !sameCert(hc.TrustAnchorPEM, *anchor) {
		return apiErr(errIncorrectTrustAnchor, "The trust anchor certificate does not match the one of HSM %s.", *clusterID)
	}
	sealed, err := s.sealStoreSecret(r.ctx, cs.ID, "hsm-pin", *password)
	if err != nil {
		return err
	}
	cs.CloudHsmClusterID, cs.TrustAnchorCertificate, cs.SealedPassword = *clusterID, *anchor, sealed
	return nil
}

func (s *Server) updateHSMStore(r *request, cs *cluster.CustomKeyStore, clusterID, password *string) error {
	if clusterID != nil {
		if len(*clusterID) < 19 || len(*clusterID) > 24 || !reHsmCluster.MatchString(*clusterID) {
			return apiErr(errValidation, "CloudHsmClusterId must match cluster-[2-7a-zA-Z]{11,16}.")
		}
		hc, ok := s.cfg.HSMStores[*clusterID]
		if !ok {
			return apiErr(errHsmClusterNotFound, "kmsd is not configured with an HSM named %s.", *clusterID)
		}
		// AWS accepts only a cluster that shares the original's history
		// (same trust anchor).
		if hc.TrustAnchorPEM != "" && !sameCert(hc.TrustAnchorPEM, cs.TrustAnchorCertificate) {
			return apiErr(errHsmClusterNotRelated, "HSM %s is not related to the key store's original HSM.", *clusterID)
		}
		cs.CloudHsmClusterID = *clusterID
	}
	if password != nil {
		if len(*password) < 7 || len(*password) > 32 {
			return validationLength("keyStorePassword", 7, 32)
		}
		sealed, err := s.sealStoreSecret(r.ctx, cs.ID, "hsm-pin", *password)
		if err != nil {
			return err
		}
		cs.SealedPassword = sealed
	}
	return nil
}

// openHSMStore logs in to the store's token. The code is the
// ConnectionErrorCode of a failure.
func (s *Server) openHSMStore(ctx context.Context, cs *cluster.CustomKeyStore) (*hsmConn, string, error) {
	hc, ok := s.cfg.HSMStores[cs.CloudHsmClusterID]
	if !ok {
		return nil, "CLUSTER_NOT_FOUND", errors.New("agent: HSM not configured")
	}
	pin, err := s.openStoreSecret(ctx, cs.ID, "hsm-pin", cs.SealedPassword)
	if err != nil {
		return nil, "INTERNAL_ERROR", err
	}
	defer clear(pin)
	p, err := hsmpool.New(hsmpool.Config{Lib: hc.Lib, TokenLabel: hc.TokenLabel, Slot: hc.Slot, SlotSet: hc.SlotSet,
		PIN: string(pin), Sessions: hc.Sessions})
	switch {
	case errors.Is(err, hsmpool.ErrTokenNotFound):
		return nil, "CLUSTER_NOT_FOUND", err
	case errors.Is(err, hsmpool.ErrLogin):
		return nil, "INVALID_CREDENTIALS", err
	case err != nil:
		return nil, "INTERNAL_ERROR", err
	}
	if err := p.Ping(ctx); err != nil {
		_ = p.Close()
		return nil, "NETWORK_ERRORS", err
	}
	return &hsmConn{pool: p, keys: xks.NewTokenKeys(p), sum: hsmSum(cs)}, "", nil
}

// connectHSMStore logs this node in to the store's token and returns ""
// or the ConnectionErrorCode of the failure.
func (s *Server) connectHSMStore(ctx context.Context, cs *cluster.CustomKeyStore) string {
	c, code, err := s.openHSMStore(ctx, cs)
	if err != nil {
		s.log.Warn("HSM key store connection failed", "store", cs.ID, "hsm", cs.CloudHsmClusterID, "err", err)
		return code
	}
	s.stores.hsm.put(cs.ID, c)
	return ""
}

func (s *Server) disconnectHSMStore(cs *cluster.CustomKeyStore) { s.stores.hsm.drop(cs.ID) }

// hsmStoreKeys returns the token keys of a connected HSM key store, logging
// this node in first if it has not yet (another node connected the store,
// or this one restarted).
func (s *Server) hsmStoreKeys(ctx context.Context, cs *cluster.CustomKeyStore) (*xks.TokenKeys, error) {
	if c, ok := s.stores.hsm.get(cs.ID); ok && c.sum == hsmSum(cs) {
		return c.keys, nil
	}
	c, _, err := s.openHSMStore(ctx, cs)
	if err != nil {
		s.log.Warn("HSM key store unreachable", "store", cs.ID, "err", err)
		return nil, apiErr(errInvalidState, "The HSM of custom key store %s cannot be reached from this node.", cs.ID)
	}
	s.stores.hsm.put(cs.ID, c)
	return c.keys, nil
}

func hsmStoreErr(err error, k *cluster.Key) error {
	switch {
	case errors.Is(err, xks.ErrKeyNotFound):
		return apiErr(errInvalidState, "The key material of %s was not found in its HSM key store.", k.Arn)
	case errors.Is(err, xks.ErrKeyExists):
		return apiErr(errInternal, "The HSM already holds a key labelled %s.", k.Arn)
	}
	return err
}

// storeRandom is GenerateRandom with CustomKeyStoreId: random bytes from
// the HSM of a connected AWS_CLOUDHSM key store. External key stores have
// none (UnsupportedOperationException, as AWS).
func (s *Server) storeRandom(r *request, id *string, n int) (any, error) {
	if err := checkStoreID(id); err != nil {
		return nil, err
	}
	cs, err := s.storeFor(*id)
	if err != nil {
		return nil, err
	}
	if cs.Type != cluster.KeyStoreCloudHSM {
		return nil, apiErr(errUnsupported, "GenerateRandom is not supported for external key stores.")
	}
	if cs.State != cluster.StoreConnected {
		return nil, apiErr(errCKSInvalidState, "Custom key store %s is %s; GenerateRandom needs it CONNECTED.", cs.ID, cs.State)
	}
	if _, err := s.hsmStoreKeys(r.ctx, cs); err != nil {
		return nil, err
	}
	c, ok := s.stores.hsm.get(cs.ID)
	if !ok || c.sum != hsmSum(cs) {
		return nil, storeUnavailable(&cluster.Key{Arn: cs.ID})
	}
	b, err := c.pool.Random(r.ctx, n)
	if err != nil {
		return nil, err
	}
	return &generateRandomResponse{Plaintext: b}, nil
}
