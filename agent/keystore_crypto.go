package agent

import (
	"context"
	"errors"
	"sync"

	"golang.org/x/time/rate"

	"github.com/kmsd/kmsd/cluster"
	"github.com/kmsd/kmsd/xks"
)

// StoreRate is AWS's request quota of one custom key store (cryptographic
// operations on its keys, per second). Such requests count against the
// account's shared symmetric quota as well (at the API's entry).
const StoreRate = 1800

// ---- key state -------------------------------------------------------------

// storeView returns k as the API sees it: a key whose custom key store is
// not CONNECTED is Unavailable (unless it is pending deletion), as the
// key-state table's Unavailable column says.
func (s *Server) storeView(k *cluster.Key) *cluster.Key {
	if k.CustomKeyStoreID == "" {
		return k
	}
	switch k.State {
	case cluster.StateEnabled, cluster.StateDisabled:
	default:
		return k
	}
	if cs, ok := s.node.KeyStore(k.CustomKeyStoreID); ok && cs.State == cluster.StoreConnected {
		return k
	}
	c := *k
	c.State = cluster.StateUnavailable
	return &c
}

// storeMetadata adds the custom key store fields to DescribeKey's metadata.
func (s *Server) storeMetadata(k *cluster.Key, md *keyMetadata) {
	if k.CustomKeyStoreID == "" {
		return
	}
	md.CustomKeyStoreId = k.CustomKeyStoreID
	if k.XksKeyID != "" {
		md.XksKeyConfiguration = &xksKeyConfigWire{Id: k.XksKeyID}
	}
	if cs, ok := s.node.KeyStore(k.CustomKeyStoreID); ok && cs.Type == cluster.KeyStoreCloudHSM {
		md.CloudHsmClusterId = cs.CloudHsmClusterID
	}
}

type xksKeyConfigWire struct {
	Id string `json:"Id"`
}

// ---- request metadata for the store layer -----------------------------------

type storeReqKey struct{}

// withStoreRequest lets seal (which only gets a context) reach the request
// for the XKS requestMetadata.
func withStoreRequest(r *request, k *cluster.Key) {
	if k.CustomKeyStoreID != "" {
		r.ctx = context.WithValue(r.ctx, storeReqKey{}, r)
	}
}

func storeRequest(ctx context.Context) *request {
	r, _ := ctx.Value(storeReqKey{}).(*request)
	if r == nil {
		return &request{id: "unknown", op: "Unknown", principal: "unknown"}
	}
	return r
}

func xksMetadata(r *request, k *cluster.Key) xks.RequestMetadata {
	return xks.RequestMetadata{AWSPrincipalArn: r.principal, KMSKeyArn: k.Arn, KMSOperation: r.op,
		KMSRequestID: r.id, KMSViaService: r.viaService}
}

// ---- per-store quota ------------------------------------------------------

type storeLimiters struct {
	mu sync.Mutex
	m  map[string]*rate.Limiter
}

func (s *Server) allowStore(storeID string) error {
	if s.quota == nil {
		return nil
	}
	l := &s.stores.limits
	l.mu.Lock()
	if l.m == nil {
		l.m = map[string]*rate.Limiter{}
	}
	lim, ok := l.m[storeID]
	if !ok {
		lim = rate.NewLimiter(StoreRate, StoreRate)
		l.m[storeID] = lim
	}
	l.mu.Unlock()
	if !lim.Allow() {
		return apiErr(errThrottling, "You have exceeded the rate at which you may call KMS keys in custom key store %s (%d requests per second). Reduce the frequency of your calls.", storeID, StoreRate)
	}
	return nil
}

// ---- the store layer ---------------------------------------------------------

// Store-layer blob (format 2):
//
//	header = 0x02 | len(keyID) | keyID
//	body   = ivLen(1) | iv | tag(16) | metaLen(1) | ciphertextMetadata | ciphertext
//
// where ciphertext is the store's AES-GCM (external key through the XKS
// proxy, or the HSM store's token key) over a format-1 blob of the same
// key, with AAD = header.

func appendStoreHeader(dst []byte, keyID string) []byte {
	dst = append(dst, blobFormatStore, byte(len(keyID)))
	return append(dst, keyID...)
}

func parseStoreBlob(b []byte) (header []byte, keyID string, sealed *xks.Sealed, ok bool) {
	if len(b) < 2 || b[0] != blobFormatStore {
		return nil, "", nil, false
	}
	n := int(b[1])
	if n == 0 || len(b) < 2+n+1 {
		return nil, "", nil, false
	}
	header, rest := b[:2+n], b[2+n:]
	for _, c := range header[2:] {
		if c < 0x21 || c > 0x7e {
			return nil, "", nil, false
		}
	}
	ivLen := int(rest[0])
	if (ivLen != 12 && ivLen != 16) || len(rest) < 1+ivLen+xks.TagSize+1 {
		return nil, "", nil, false
	}
	s := &xks.Sealed{IV: rest[1 : 1+ivLen], Tag: rest[1+ivLen : 1+ivLen+xks.TagSize]}
	rest = rest[1+ivLen+xks.TagSize:]
	mLen := int(rest[0])
	if mLen > 20 || len(rest) < 1+mLen {
		return nil, "", nil, false
	}
	if mLen > 0 {
		s.CiphertextMetadata = rest[1 : 1+mLen]
	}
	s.Ciphertext = rest[1+mLen:]
	if len(s.Ciphertext) == 0 {
		return nil, "", nil, false
	}
	return header, string(header[2:]), s, true
}

// sealStore wraps inner (a format-1 blob of k) in k's store layer.
func (s *Server) sealStore(ctx context.Context, k *cluster.Key, inner []byte) ([]byte, error) {
	cs, ok := s.node.KeyStore(k.CustomKeyStoreID)
	if !ok || cs.State != cluster.StoreConnected {
		return nil, storeUnavailable(k)
	}
	if err := s.allowStore(cs.ID); err != nil {
		return nil, err
	}
	header := appendStoreHeader(make([]byte, 0, 2+len(k.ID)), k.ID)
	var sealed *xks.Sealed
	if cs.Type == cluster.KeyStoreExternal {
		c, err := s.xksClient(ctx, cs)
		if err != nil {
			return nil, err
		}
		sealed, err = c.Encrypt(ctx, k.XksKeyID, xksMetadata(storeRequest(ctx), k), inner, header)
		if err != nil {
			return nil, xksCryptoErr(err, k)
		}
	} else {
		tk, err := s.hsmStoreKeys(ctx, cs)
		if err != nil {
			return nil, err
		}
		iv, ct, tag, err := tk.Encrypt(ctx, k.Arn, inner, header)
		if err != nil {
			return nil, hsmStoreErr(err, k)
		}
		sealed = &xks.Sealed{IV: iv, Ciphertext: ct, Tag: tag}
	}
	out := make([]byte, 0, len(header)+3+len(sealed.IV)+xks.TagSize+len(sealed.CiphertextMetadata)+len(sealed.Ciphertext))
	out = append(out, header...)
	out = append(out, byte(len(sealed.IV)))
	out = append(out, sealed.IV...)
	out = append(out, sealed.Tag...)
	out = append(out, byte(len(sealed.CiphertextMetadata)))
	out = append(out, sealed.CiphertextMetadata...)
	return append(out, sealed.Ciphertext...), nil
}

// openStore removes the store layer of b, after resolving, authorizing and
// state-checking its key as open does. It returns the inner format-1 blob
// and the key (which the inner blob must name).
func (s *Server) openStore(r *request, a authReq, b []byte, want *cluster.Key) ([]byte, *cluster.Key, error) {
	header, keyID, sealed, ok := parseStoreBlob(b)
	if !ok {
		return nil, nil, invalidCiphertext
	}
	if want != nil && want.ID != keyID {
		return nil, nil, apiErr(errIncorrectKey, "The key ID in the request does not identify a KMS key that can perform this operation.")
	}
	k, ok := s.node.Key(keyID)
	if !ok || k.CustomKeyStoreID == "" {
		return nil, nil, invalidCiphertext
	}
	if a.action == "" {
		a.action = r.op
	}
	a.key = k
	if err := s.authorize(r, a); err != nil {
		return nil, nil, err
	}
	if err := s.checkKeyState(r.op, k); err != nil {
		return nil, nil, err
	}
	cs, ok := s.node.KeyStore(k.CustomKeyStoreID)
	if !ok || cs.State != cluster.StoreConnected {
		return nil, nil, storeUnavailable(k)
	}
	if err := s.allowStore(cs.ID); err != nil {
		return nil, nil, err
	}
	if cs.Type == cluster.KeyStoreExternal {
		c, err := s.xksClient(r.ctx, cs)
		if err != nil {
			return nil, nil, err
		}
		inner, err := c.Decrypt(r.ctx, k.XksKeyID, xksMetadata(r, k), sealed, header)
		if err != nil {
			return nil, nil, xksCryptoErr(err, k)
		}
		return inner, k, nil
	}
	tk, err := s.hsmStoreKeys(r.ctx, cs)
	if err != nil {
		return nil, nil, err
	}
	inner, err := tk.Decrypt(r.ctx, k.Arn, sealed.IV, sealed.Ciphertext, sealed.Tag, header)
	if errors.Is(err, xks.ErrAuthFailed) {
		return nil, nil, invalidCiphertext
	}
	if err != nil {
		return nil, nil, hsmStoreErr(err, k)
	}
	return inner, k, nil
}

func storeUnavailable(k *cluster.Key) error {
	return apiErr(errInvalidState, "%s is unavailable: its custom key store is not connected. Connect the custom key store and try the request again.", k.Arn)
}

// xksCryptoErr maps a failed XKS call of a cryptographic operation: always
// KMSInvalidStateException, with the message AWS gives each cause.
func xksCryptoErr(err error, k *cluster.Key) error {
	var pe *xks.ProxyError
	msg := "AWS KMS cannot interpret the response from the external key store proxy. If you see this error repeatedly, report it to your external key store proxy administrator."
	switch {
	case errors.Is(err, xks.ErrTimeout):
		msg = "AWS KMS rejected the request because the external key store proxy did not respond in time. Retry the request. If you see this error repeatedly, report it to your external key store proxy administrator."
	case errors.Is(err, xks.ErrTLS):
		msg = "AWS KMS cannot establish a TLS connection to the external key store proxy. Verify the TLS configuration, including its certificate."
	case errors.Is(err, xks.ErrUnreachable):
		msg = "AWS KMS cannot communicate with the external key store proxy. This might be a transient network issue. If you see this error repeatedly, verify that your external key store proxy is active and is connected to the network, and that its endpoint URI is correct in your external key store."
	case errors.As(err, &pe):
		switch pe.Name {
		case xks.ErrNameInvalidState:
			msg = "The external key associated with this KMS key in an external key store is not enabled in the external key manager. Enable the external key in the external key manager and retry the request."
		case xks.ErrNameInvalidCiphertext:
			msg = "The external key store proxy rejected the request because the specified ciphertext or encryption context is corrupted, missing, or otherwise invalid."
		case xks.ErrNameInvalidKeyUsage:
			msg = "The external key associated with this KMS key in an external key store does not support the requested operation. Enable the operation on the key in your external key manager, and try the request again."
		case xks.ErrNameAuthenticationFailed:
			msg = "The external key store proxy rejected the request because it could not authenticate AWS KMS. Verify the XKS proxy authentication credentials for your external key store and update if necessary."
		case xks.ErrNameAccessDenied:
			msg = "The external key store proxy denied access to the operation. Verify that the user and the external key are both authorized for this operation, and try the request again."
		case xks.ErrNameKeyNotFound:
			msg = "The external key associated with this KMS key in an external key store was not found in its external key manager. If the external key ID associated with this KMS key is incorrect, create a new KMS key with the correct external key ID."
		case xks.ErrNameInvalidURIPath:
			msg = "The external key store proxy rejected the request because of an invalid URI path. Verify the URI path for your external key store and update if necessary."
		case xks.ErrNameUnsupported:
			msg = "The external key store proxy rejected the request because it does not support the requested operation. If you see this error repeatedly, report it to your external key store proxy administrator."
		case xks.ErrNameDependencyTimeout:
			msg = "The external key store proxy did not respond to the request in the time allotted. Retry the request. If you see this error repeatedly, report it to your external key store proxy administrator."
		case xks.ErrNameThrottling:
			msg = "The external key store proxy rejected the request due to a very high request rate. Reduce the frequency of your calls using KMS keys in this external key store."
		case xks.ErrNameInternal:
			msg = "The external key store proxy rejected the request because it cannot communicate with the external key manager. Verify that the external key store proxy configuration is correct and that the external key manager is available."
		}
	}
	return apiErr(errInvalidState, "%s", msg)
}

// ---- CreateKey ------------------------------------------------------------

// storeKeyPlan is what CreateKey learned about a key in a custom key store.
type storeKeyPlan struct {
	store    *cluster.CustomKeyStore
	xksKeyID string
}

// planStoreKey checks a CreateKey request for a key in a custom key store
// (Origin AWS_CLOUDHSM or EXTERNAL_KEY_STORE, CustomKeyStoreId, XksKeyId).
// For an external key store it asks the proxy for the external key's
// metadata. Called after authorization.
func (s *Server) planStoreKey(r *request, origin string, storeID, xksKeyID *string) (*storeKeyPlan, error) {
	switch {
	case origin != originCloudHSM && origin != originXKS:
		return nil, apiErr(errValidation, "CustomKeyStoreId and XksKeyId need Origin AWS_CLOUDHSM or EXTERNAL_KEY_STORE.")
	case storeID == nil:
		return nil, apiErr(errValidation, "Origin %s needs a CustomKeyStoreId.", origin)
	case origin == originXKS && xksKeyID == nil:
		return nil, apiErr(errValidation, "Origin EXTERNAL_KEY_STORE needs an XksKeyId.")
	case origin == originCloudHSM && xksKeyID != nil:
		return nil, apiErr(errValidation, "XksKeyId is valid only with Origin EXTERNAL_KEY_STORE.")
	}
	if err := checkStoreID(storeID); err != nil {
		return nil, err
	}
	cs, err := s.storeFor(*storeID)
	if err != nil {
		return nil, err
	}
	want := cluster.KeyStoreCloudHSM
	if origin == originXKS {
		want = cluster.KeyStoreExternal
	}
	if cs.Type != want {
		return nil, apiErr(errUnsupported, "Origin %s does not match custom key store %s of type %s.", origin, cs.ID, cs.Type)
	}
	if cs.State != cluster.StoreConnected {
		return nil, apiErr(errCKSInvalidState, "Custom key store %s is %s; it must be CONNECTED to create keys in it.", cs.ID, cs.State)
	}
	plan := &storeKeyPlan{store: cs}
	if origin == originCloudHSM {
		return plan, nil
	}
	if !xks.ValidKeyID(*xksKeyID) {
		return nil, apiErr(errValidation, "XksKeyId must be 1 to 128 characters of a-z A-Z 0-9 - _ .")
	}
	plan.xksKeyID = *xksKeyID
	for _, o := range s.node.StoreKeys(cs.ID) {
		if o.XksKeyID == plan.xksKeyID && !s.cfg.XKSSharedKeys {
			return nil, apiErr(errXksKeyInUse, "External key %s is already associated with KMS key %s in this external key store.", plan.xksKeyID, o.Arn)
		}
	}
	c, err := s.xksClient(r.ctx, cs)
	if err != nil {
		return nil, err
	}
	md, err := c.Metadata(r.ctx, plan.xksKeyID, xks.RequestMetadata{AWSPrincipalArn: r.principal, KMSOperation: r.op, KMSRequestID: r.id, KMSViaService: r.viaService})
	if err != nil {
		var pe *xks.ProxyError
		if errors.As(err, &pe) {
			switch pe.Name {
			case xks.ErrNameKeyNotFound:
				return nil, apiErr(errXksKeyNotFound, "The external key %s was not found in the external key manager.", plan.xksKeyID)
			case xks.ErrNameInvalidState, xks.ErrNameInvalidKeyUsage:
				return nil, apiErr(errXksKeyInvalidConfig, "The external key %s is not enabled or does not support encryption and decryption.", plan.xksKeyID)
			case xks.ErrNameAccessDenied:
				return nil, apiErr(errInvalidState, "The external key store proxy denied access to the operation.")
			}
		}
		return nil, apiErr(errCKSInvalidState, "%s", xksCryptoErr(err, &cluster.Key{}).(*APIError).Message)
	}
	enc, dec := false, false
	for _, u := range md.KeyUsage {
		enc = enc || u == "ENCRYPT"
		dec = dec || u == "DECRYPT"
	}
	if md.KeySpec != "AES_256" || !enc || !dec || md.KeyStatus != "ENABLED" {
		return nil, apiErr(errXksKeyInvalidConfig, "The external key %s must be an enabled AES_256 key that can ENCRYPT and DECRYPT (it is %s, %v, %s).", plan.xksKeyID, md.KeySpec, md.KeyUsage, md.KeyStatus)
	}
	return plan, nil
}

// createStoreKey finishes k (already holding its own HSM-rooted material)
// as a key of the plan's store and proposes it.
func (s *Server) createStoreKey(r *request, plan *storeKeyPlan, k *cluster.Key) error {
	k.CustomKeyStoreID, k.XksKeyID = plan.store.ID, plan.xksKeyID
	if plan.store.Type == cluster.KeyStoreCloudHSM {
		tk, err := s.hsmStoreKeys(r.ctx, plan.store)
		if err != nil {
			return err
		}
		if err := tk.Create(r.ctx, k.Arn); err != nil {
			return hsmStoreErr(err, k)
		}
	}
	_, err := s.apply(r.ctx, &cluster.CreateStoreKey{Key: k, MaxKeys: s.cfg.MaxKeys, SharedXksKey: s.cfg.XKSSharedKeys})
	if err != nil && plan.store.Type == cluster.KeyStoreCloudHSM {
		_ = s.stores.hsm.deleteKey(r.ctx, plan.store.ID, k.Arn) // not a KMS key: leave no orphan
	}
	if errors.Is(err, cluster.ErrLimitExceeded) {
		return apiErr(errLimitExceeded, "The request was rejected because the account has reached its quota of KMS keys.")
	}
	if err != nil {
		return storeErr(err)
	}
	return nil
}

// storeUnsupported lists the operations AWS refuses for every key in a
// custom key store, whatever its state (UnsupportedOperationException,
// the key-state table's [7]).
var storeUnsupported = map[string]bool{
	"EnableKeyRotation":  true,
	"DisableKeyRotation": true,
	"RotateKeyOnDemand":  true,
}
