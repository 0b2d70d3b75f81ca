package agent

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/kmsd/kmsd/cluster"
	"github.com/kmsd/kmsd/xks"
)

// Custom key stores: the KMS API's CreateCustomKeyStore family, keys in an
// external key store (EXTERNAL_KEY_STORE, reached through an XKS proxy) and
// the crypto hooks that add the store's layer to their ciphertexts. README
// "Custom key stores" says how it maps onto AWS.

const (
	originCloudHSM = "AWS_CLOUDHSM"
	originXKS      = "EXTERNAL_KEY_STORE"
	// blobFormatStore is the outer ciphertext of a key in a custom key
	// store: the store's layer around a format-1 blob of the key's own
	// HSM-rooted material (double encryption).
	blobFormatStore = 0x02
)

// AWS error types of custom key stores.
const (
	errCKSNotFound            = "CustomKeyStoreNotFoundException"
	errCKSNameInUse           = "CustomKeyStoreNameInUseException"
	errCKSInvalidState        = "CustomKeyStoreInvalidStateException"
	errCKSHasCMKs             = "CustomKeyStoreHasCMKsException"
	errHsmClusterInUse        = "CloudHsmClusterInUseException"
	errHsmClusterNotFound     = "CloudHsmClusterNotFoundException"
	errHsmClusterNotActive    = "CloudHsmClusterNotActiveException"
	errHsmClusterInvalidCfg   = "CloudHsmClusterInvalidConfigurationException"
	errHsmClusterNotRelated   = "CloudHsmClusterNotRelatedException"
	errIncorrectTrustAnchor   = "IncorrectTrustAnchorException"
	errXksURIInUse            = "XksProxyUriInUseException"
	errXksURIUnreachable      = "XksProxyUriUnreachableException"
	errXksIncorrectCredential = "XksProxyIncorrectAuthenticationCredentialException"
	errXksInvalidResponse     = "XksProxyInvalidResponseException"
	errXksInvalidConfig       = "XksProxyInvalidConfigurationException"
	errXksVpcNotFound         = "XksProxyVpcEndpointServiceNotFoundException"
	errXksKeyInUse            = "XksKeyAlreadyInUseException"
	errXksKeyNotFound         = "XksKeyNotFoundException"
	errXksKeyInvalidConfig    = "XksKeyInvalidConfigurationException"
)

// ---- wire ------------------------------------------------------------------

type xksCredentialWire struct {
	AccessKeyId        *string `json:"AccessKeyId"`
	RawSecretAccessKey *string `json:"RawSecretAccessKey"`
}

type createCustomKeyStoreRequest struct {
	CustomKeyStoreName               *string            `json:"CustomKeyStoreName"`
	CloudHsmClusterId                *string            `json:"CloudHsmClusterId"`
	TrustAnchorCertificate           *string            `json:"TrustAnchorCertificate"`
	KeyStorePassword                 *string            `json:"KeyStorePassword"`
	CustomKeyStoreType               *string            `json:"CustomKeyStoreType"`
	XksProxyUriEndpoint              *string            `json:"XksProxyUriEndpoint"`
	XksProxyUriPath                  *string            `json:"XksProxyUriPath"`
	XksProxyVpcEndpointServiceName   *string            `json:"XksProxyVpcEndpointServiceName"`
	XksProxyVpcEndpointServiceOwner  *string            `json:"XksProxyVpcEndpointServiceOwner"`
	XksProxyAuthenticationCredential *xksCredentialWire `json:"XksProxyAuthenticationCredential"`
	XksProxyConnectivity             *string            `json:"XksProxyConnectivity"`
}

type updateCustomKeyStoreRequest struct {
	CustomKeyStoreId                 *string            `json:"CustomKeyStoreId"`
	NewCustomKeyStoreName            *string            `json:"NewCustomKeyStoreName"`
	KeyStorePassword                 *string            `json:"KeyStorePassword"`
	CloudHsmClusterId                *string            `json:"CloudHsmClusterId"`
	XksProxyUriEndpoint              *string            `json:"XksProxyUriEndpoint"`
	XksProxyUriPath                  *string            `json:"XksProxyUriPath"`
	XksProxyVpcEndpointServiceName   *string            `json:"XksProxyVpcEndpointServiceName"`
	XksProxyVpcEndpointServiceOwner  *string            `json:"XksProxyVpcEndpointServiceOwner"`
	XksProxyAuthenticationCredential *xksCredentialWire `json:"XksProxyAuthenticationCredential"`
	XksProxyConnectivity             *string            `json:"XksProxyConnectivity"`
}

type customKeyStoreIDRequest struct {
	CustomKeyStoreId *string `json:"CustomKeyStoreId"`
}

type describeCustomKeyStoresRequest struct {
	CustomKeyStoreId   *string `json:"CustomKeyStoreId"`
	CustomKeyStoreName *string `json:"CustomKeyStoreName"`
	Limit              *int64  `json:"Limit"`
	Marker             *string `json:"Marker"`
}

type xksProxyConfigWire struct {
	Connectivity string `json:"Connectivity"`
	AccessKeyId  string `json:"AccessKeyId"`
	UriEndpoint  string `json:"UriEndpoint"`
	UriPath      string `json:"UriPath"`
}

type customKeyStoreEntry struct {
	CustomKeyStoreId       string              `json:"CustomKeyStoreId"`
	CustomKeyStoreName     string              `json:"CustomKeyStoreName"`
	CloudHsmClusterId      string              `json:"CloudHsmClusterId,omitempty"`
	TrustAnchorCertificate string              `json:"TrustAnchorCertificate,omitempty"`
	ConnectionState        string              `json:"ConnectionState"`
	ConnectionErrorCode    string              `json:"ConnectionErrorCode,omitempty"`
	CreationDate           epoch               `json:"CreationDate"`
	CustomKeyStoreType     string              `json:"CustomKeyStoreType"`
	XksProxyConfiguration  *xksProxyConfigWire `json:"XksProxyConfiguration,omitempty"`
}

type describeCustomKeyStoresResponse struct {
	CustomKeyStores []customKeyStoreEntry `json:"CustomKeyStores"`
	NextMarker      string                `json:"NextMarker,omitempty"`
	Truncated       bool                  `json:"Truncated"`
}

type createCustomKeyStoreResponse struct {
	CustomKeyStoreId string `json:"CustomKeyStoreId"`
}

type emptyResponse struct{}

// ---- validation ------------------------------------------------------------

var (
	reXksEndpoint = regexp.MustCompile(`^https://[a-zA-Z0-9.-]+(:[0-9]{1,5})?$`)
	reXksPath     = regexp.MustCompile(`^(/[a-zA-Z0-9/_-]+/kms/xks/v[0-9]{1,2})$|^(/kms/xks/v[0-9]{1,2})$`)
	reHsmCluster  = regexp.MustCompile(`^cluster-[2-7a-zA-Z]{11,16}$`)
)

func checkStoreName(n *string, field string) error {
	if n == nil {
		return validationRequired(field)
	}
	if l := utf8.RuneCountInString(*n); l < 1 || l > 256 {
		return validationLength(field, 1, 256)
	}
	return nil
}

func checkStoreID(id *string) error {
	if id == nil {
		return validationRequired("customKeyStoreId")
	}
	if len(*id) < 1 || len(*id) > 64 {
		return validationLength("customKeyStoreId", 1, 64)
	}
	return nil
}

func checkXksEndpoint(e string) error {
	if len(e) < 10 || len(e) > 128 || !reXksEndpoint.MatchString(e) {
		return apiErr(errValidation, "XksProxyUriEndpoint must be https:// followed by a host name (and, with kmsd, an optional :port), 10 to 128 characters.")
	}
	return nil
}

func checkXksPath(p string) error {
	if len(p) < 10 || len(p) > 128 || !reXksPath.MatchString(p) {
		return apiErr(errValidation, "XksProxyUriPath must be [/prefix]/kms/xks/v1, 10 to 128 characters of a-z A-Z 0-9 / _ -.")
	}
	if !strings.HasSuffix(p, "/kms/xks/v1") {
		return apiErr(errXksInvalidConfig, "kmsd speaks version 1 of the XKS Proxy API only (path /kms/xks/v1).")
	}
	return nil
}

func checkXksCredential(c *xksCredentialWire) error {
	if c == nil || c.AccessKeyId == nil || c.RawSecretAccessKey == nil {
		return validationRequired("xksProxyAuthenticationCredential")
	}
	if err := xks.CheckCredential(*c.AccessKeyId, *c.RawSecretAccessKey); err != nil {
		return apiErr(errValidation, "XksProxyAuthenticationCredential: %s.", err.Error())
	}
	return nil
}

// ---- store secrets ---------------------------------------------------------

func storeSecretAAD(storeID, what string) []byte {
	return []byte("kmsd/custom-key-store/v1/" + what + "/" + storeID)
}

// sealStoreSecret seals a store's secret (XKS secret access key, HSM PIN)
// with the HSM key that seals access-key secrets.
func (s *Server) sealStoreSecret(ctx context.Context, storeID, what, secret string) ([]byte, error) {
	wk, ok := s.node.Meta(metaCredentialKey)
	if !ok {
		return nil, errors.New("agent: no credential key in state")
	}
	return s.pool.Seal(ctx, wk, []byte(secret), storeSecretAAD(storeID, what))
}

func (s *Server) openStoreSecret(ctx context.Context, storeID, what string, sealed []byte) ([]byte, error) {
	wk, ok := s.node.Meta(metaCredentialKey)
	if !ok {
		return nil, errors.New("agent: no credential key in state")
	}
	return s.pool.Open(ctx, wk, sealed, storeSecretAAD(storeID, what))
}

// ---- XKS clients -----------------------------------------------------------

// xksClients caches one client (with its kept-alive TLS connections) per
// external key store, rebuilt when the store's settings change.
type xksClients struct {
	mu sync.Mutex
	m  map[string]xksClientEntry
}

type xksClientEntry struct {
	sum [32]byte
	c   *xks.Client
}

func storeSum(cs *cluster.CustomKeyStore) [32]byte {
	h := sha256.New()
	for _, f := range []string{cs.XksEndpoint, cs.XksPath, cs.XksAccessKeyID, string(cs.XksSealedSecret)} {
		fmt.Fprintf(h, "%d:%s;", len(f), f)
	}
	var sum [32]byte
	h.Sum(sum[:0])
	return sum
}

func (s *Server) xksClientsOf() *xksClients {
	c := &s.stores.xks
	c.mu.Lock()
	if c.m == nil {
		c.m = map[string]xksClientEntry{}
	}
	c.mu.Unlock()
	return c
}

// storeState is the Server's runtime state of custom key stores.
type storeState struct {
	xks    xksClients
	hsm    hsmStores
	limits storeLimiters
}

// xksClient returns the client of an external key store.
func (s *Server) xksClient(ctx context.Context, cs *cluster.CustomKeyStore) (*xks.Client, error) {
	cc := s.xksClientsOf()
	sum := storeSum(cs)
	cc.mu.Lock()
	e, ok := cc.m[cs.ID]
	cc.mu.Unlock()
	if ok && e.sum == sum {
		return e.c, nil
	}
	secret, err := s.openStoreSecret(ctx, cs.ID, "xks-secret", cs.XksSealedSecret)
	if err != nil {
		return nil, err
	}
	defer clear(secret)
	c, err := xks.NewClient(xks.ClientConfig{Endpoint: cs.XksEndpoint, Path: cs.XksPath, AccessKeyID: cs.XksAccessKeyID,
		SecretAccessKey: string(secret), Region: s.cfg.Region, Timeout: s.cfg.XKSTimeout, RootCAs: s.cfg.XKSRootCAs})
	if err != nil {
		return nil, err
	}
	cc.mu.Lock()
	if old, ok := cc.m[cs.ID]; ok {
		old.c.Close()
	}
	cc.m[cs.ID] = xksClientEntry{sum: sum, c: c}
	cc.mu.Unlock()
	return c, nil
}

// xksHealth calls the proxy's GetHealthStatus for op and reports the
// failure as a ConnectionErrorCode and the KMS exception AWS gives
// Create/UpdateCustomKeyStore for it.
func (s *Server) xksHealth(r *request, cs *cluster.CustomKeyStore) (code string, err error) {
	c, err := s.xksClient(r.ctx, cs)
	if err != nil {
		return "INTERNAL_ERROR", err
	}
	h, err := c.Health(r.ctx, xks.RequestMetadata{KMSRequestID: r.id, KMSOperation: r.op})
	if err == nil && !h.Available() {
		return "XKS_PROXY_INVALID_RESPONSE", apiErr(errXksInvalidResponse, "The external key store proxy reports that no external key manager is available.")
	}
	if err == nil {
		return "", nil
	}
	var pe *xks.ProxyError
	switch {
	case errors.Is(err, xks.ErrTimeout):
		return "XKS_PROXY_TIMED_OUT", apiErr(errXksURIUnreachable, "AWS KMS rejected the request because the external key store proxy did not respond in time. Retry the request. If you see this error repeatedly, report it to your external key store proxy administrator.")
	case errors.Is(err, xks.ErrTLS):
		return "XKS_PROXY_INVALID_TLS_CONFIGURATION", apiErr(errXksURIUnreachable, "AWS KMS cannot establish a TLS connection to the external key store proxy. Verify the TLS configuration, including its certificate.")
	case errors.Is(err, xks.ErrUnreachable):
		return "XKS_PROXY_NOT_REACHABLE", apiErr(errXksURIUnreachable, "AWS KMS cannot communicate with the external key store proxy. Verify that your external key store proxy is active and is connected to the network, and that its endpoint URI is correct in your external key store.")
	case errors.As(err, &pe):
		switch pe.Name {
		case xks.ErrNameAuthenticationFailed:
			return "INVALID_CREDENTIALS", apiErr(errXksIncorrectCredential, "The external key store proxy rejected the request because it could not authenticate AWS KMS. Verify the XKS proxy authentication credentials for your external key store and update if necessary.")
		case xks.ErrNameInvalidURIPath:
			return "XKS_PROXY_INVALID_CONFIGURATION", apiErr(errXksInvalidConfig, "The external key store proxy rejected the request because of an invalid URI path. Verify the URI path for your external key store and update if necessary.")
		case xks.ErrNameAccessDenied:
			return "XKS_PROXY_ACCESS_DENIED", apiErr(errXksInvalidResponse, "The external key store proxy denied access to the operation.")
		case xks.ErrNameDependencyTimeout, xks.ErrNameThrottling:
			return "XKS_PROXY_TIMED_OUT", apiErr(errXksURIUnreachable, "The external key store proxy did not respond to the request in the time allotted. Retry the request.")
		}
	}
	return "XKS_PROXY_INVALID_RESPONSE", apiErr(errXksInvalidResponse, "AWS KMS cannot interpret the response from the external key store proxy. If you see this error repeatedly, report it to your external key store proxy administrator.")
}

// ---- operations ------------------------------------------------------------

func storeErr(err error) error {
	switch {
	case errors.Is(err, cluster.ErrKeyStoreNotFound):
		return apiErr(errCKSNotFound, "The custom key store was not found.")
	case errors.Is(err, cluster.ErrKeyStoreNameInUse):
		return apiErr(errCKSNameInUse, "The custom key store name is already in use in this account and Region.")
	case errors.Is(err, cluster.ErrKeyStoreState):
		return apiErr(errCKSInvalidState, "%s", strings.TrimPrefix(err.Error(), cluster.ErrKeyStoreState.Error()+": "))
	case errors.Is(err, cluster.ErrKeyStoreHasKeys):
		return apiErr(errCKSHasCMKs, "The custom key store still contains KMS keys. Delete them (ScheduleKeyDeletion, then wait for the deletion) before deleting the store.")
	case errors.Is(err, cluster.ErrXksKeyInUse):
		return apiErr(errXksKeyInUse, "The external key is already associated with a KMS key in this external key store.")
	case errors.Is(err, cluster.ErrLimitExceeded):
		return apiErr(errLimitExceeded, "The request was rejected because the account has reached its quota of %d custom key stores.", cluster.MaxKeyStores)
	}
	return err
}

func (s *Server) storeFor(id string) (*cluster.CustomKeyStore, error) {
	cs, ok := s.node.KeyStore(id)
	if !ok || cs.AccountID != s.cfg.AccountID {
		return nil, apiErr(errCKSNotFound, "Custom key store %s was not found.", id)
	}
	return cs, nil
}

func opCreateCustomKeyStore(s *Server, r *request) (any, error) {
	var in createCustomKeyStoreRequest
	if err := decode(r, &in); err != nil {
		return nil, err
	}
	if err := checkStoreName(in.CustomKeyStoreName, "customKeyStoreName"); err != nil {
		return nil, err
	}
	typ := cluster.KeyStoreCloudHSM
	if in.CustomKeyStoreType != nil {
		typ = *in.CustomKeyStoreType
		if typ != cluster.KeyStoreCloudHSM && typ != cluster.KeyStoreExternal {
			return nil, validationEnum("customKeyStoreType", typ, "AWS_CLOUDHSM, EXTERNAL_KEY_STORE")
		}
	}
	if err := s.authorize(r, authReq{action: r.op}); err != nil {
		return nil, err
	}
	cs := cluster.CustomKeyStore{ID: "cks-" + strings.ReplaceAll(uuid.NewString(), "-", "")[:17], Name: *in.CustomKeyStoreName,
		AccountID: s.cfg.AccountID, Type: typ, Created: s.cfg.Now().UnixNano(), State: cluster.StoreDisconnected}
	if typ == cluster.KeyStoreCloudHSM {
		if err := s.prepareHSMStore(r, &cs, in.CloudHsmClusterId, in.TrustAnchorCertificate, in.KeyStorePassword); err != nil {
			return nil, err
		}
	} else {
		switch {
		case in.CloudHsmClusterId != nil || in.TrustAnchorCertificate != nil || in.KeyStorePassword != nil:
			return nil, apiErr(errValidation, "CloudHsmClusterId, TrustAnchorCertificate and KeyStorePassword are not valid for an EXTERNAL_KEY_STORE.")
		case in.XksProxyUriEndpoint == nil:
			return nil, validationRequired("xksProxyUriEndpoint")
		case in.XksProxyUriPath == nil:
			return nil, validationRequired("xksProxyUriPath")
		}
		conn := "PUBLIC_ENDPOINT"
		if in.XksProxyConnectivity != nil {
			conn = *in.XksProxyConnectivity
		}
		switch conn {
		case "PUBLIC_ENDPOINT":
			if in.XksProxyVpcEndpointServiceName != nil || in.XksProxyVpcEndpointServiceOwner != nil {
				return nil, apiErr(errValidation, "XksProxyVpcEndpointServiceName is valid only with VPC_ENDPOINT_SERVICE connectivity.")
			}
		case "VPC_ENDPOINT_SERVICE":
			return nil, apiErr(errXksVpcNotFound, "kmsd runs outside AWS and has no VPC endpoint services; use PUBLIC_ENDPOINT connectivity.")
		default:
			return nil, validationEnum("xksProxyConnectivity", conn, "PUBLIC_ENDPOINT, VPC_ENDPOINT_SERVICE")
		}
		if err := checkXksEndpoint(*in.XksProxyUriEndpoint); err != nil {
			return nil, err
		}
		if err := checkXksPath(*in.XksProxyUriPath); err != nil {
			return nil, err
		}
		if err := checkXksCredential(in.XksProxyAuthenticationCredential); err != nil {
			return nil, err
		}
		sealed, err := s.sealStoreSecret(r.ctx, cs.ID, "xks-secret", *in.XksProxyAuthenticationCredential.RawSecretAccessKey)
		if err != nil {
			return nil, err
		}
		cs.XksEndpoint, cs.XksPath, cs.XksConnectivity = *in.XksProxyUriEndpoint, *in.XksProxyUriPath, conn
		cs.XksAccessKeyID, cs.XksSealedSecret = *in.XksProxyAuthenticationCredential.AccessKeyId, sealed
		// AWS checks the proxy (endpoint, path, credential) before it
		// creates the store.
		if _, err := s.xksHealth(r, &cs); err != nil {
			return nil, err
		}
	}
	if _, err := s.apply(r.ctx, &cluster.CreateKeyStore{Store: cs}); err != nil {
		if errors.Is(err, cluster.ErrKeyStoreInUse) {
			if typ == cluster.KeyStoreCloudHSM {
				return nil, apiErr(errHsmClusterInUse, "The HSM %s is already associated with another custom key store.", cs.CloudHsmClusterID)
			}
			return nil, apiErr(errXksURIInUse, "The proxy endpoint and path are already used by another external key store.")
		}
		return nil, storeErr(err)
	}
	return &createCustomKeyStoreResponse{CustomKeyStoreId: cs.ID}, nil
}

func (s *Server) storeEntry(cs *cluster.CustomKeyStore) customKeyStoreEntry {
	e := customKeyStoreEntry{CustomKeyStoreId: cs.ID, CustomKeyStoreName: cs.Name, ConnectionState: cs.State,
		CreationDate: epoch(cs.Created), CustomKeyStoreType: cs.Type, CloudHsmClusterId: cs.CloudHsmClusterID,
		TrustAnchorCertificate: cs.TrustAnchorCertificate}
	if cs.State == cluster.StoreFailed || cs.State == cluster.StoreDisconnected {
		e.ConnectionErrorCode = cs.ErrorCode
	}
	if cs.Type == cluster.KeyStoreExternal {
		e.XksProxyConfiguration = &xksProxyConfigWire{Connectivity: cs.XksConnectivity, AccessKeyId: cs.XksAccessKeyID,
			UriEndpoint: cs.XksEndpoint, UriPath: cs.XksPath}
	}
	return e
}

func opDescribeCustomKeyStores(s *Server, r *request) (any, error) {
	var in describeCustomKeyStoresRequest
	if err := decode(r, &in); err != nil {
		return nil, err
	}
	limit := 1000
	if in.Limit != nil {
		if *in.Limit < 1 || *in.Limit > 1000 {
			return nil, validationRange("limit", *in.Limit, 1, 1000)
		}
		limit = int(*in.Limit)
	}
	if in.CustomKeyStoreId != nil && in.CustomKeyStoreName != nil {
		return nil, apiErr(errValidation, "Specify CustomKeyStoreId or CustomKeyStoreName, not both.")
	}
	if err := s.authorize(r, authReq{action: r.op}); err != nil {
		return nil, err
	}
	all := s.node.KeyStores(s.cfg.AccountID)
	var match []*cluster.CustomKeyStore
	for _, cs := range all {
		if (in.CustomKeyStoreId == nil || cs.ID == *in.CustomKeyStoreId) && (in.CustomKeyStoreName == nil || cs.Name == *in.CustomKeyStoreName) {
			match = append(match, cs)
		}
	}
	if len(match) == 0 && (in.CustomKeyStoreId != nil || in.CustomKeyStoreName != nil) {
		return nil, apiErr(errCKSNotFound, "No custom key store with that id or name was found.")
	}
	start := 0
	if in.Marker != nil {
		start = -1
		for i, cs := range match {
			if cs.ID == *in.Marker {
				start = i + 1
			}
		}
		if start < 0 {
			return nil, apiErr(errInvalidMarker, "The marker %q is not one this service returned.", *in.Marker)
		}
	}
	out := &describeCustomKeyStoresResponse{CustomKeyStores: []customKeyStoreEntry{}}
	for _, cs := range match[start:] {
		if len(out.CustomKeyStores) == limit {
			out.Truncated = true
			out.NextMarker = out.CustomKeyStores[limit-1].CustomKeyStoreId
			break
		}
		out.CustomKeyStores = append(out.CustomKeyStores, s.storeEntry(cs))
	}
	return out, nil
}

func opUpdateCustomKeyStore(s *Server, r *request) (any, error) {
	var in updateCustomKeyStoreRequest
	if err := decode(r, &in); err != nil {
		return nil, err
	}
	if err := checkStoreID(in.CustomKeyStoreId); err != nil {
		return nil, err
	}
	if in.NewCustomKeyStoreName != nil {
		if err := checkStoreName(in.NewCustomKeyStoreName, "newCustomKeyStoreName"); err != nil {
			return nil, err
		}
	}
	if err := s.authorize(r, authReq{action: r.op}); err != nil {
		return nil, err
	}
	old, err := s.storeFor(*in.CustomKeyStoreId)
	if err != nil {
		return nil, err
	}
	cs := *old
	if in.NewCustomKeyStoreName != nil {
		cs.Name = *in.NewCustomKeyStoreName
	}
	xksFields := in.XksProxyUriEndpoint != nil || in.XksProxyUriPath != nil || in.XksProxyAuthenticationCredential != nil ||
		in.XksProxyConnectivity != nil || in.XksProxyVpcEndpointServiceName != nil || in.XksProxyVpcEndpointServiceOwner != nil
	hsmFields := in.CloudHsmClusterId != nil || in.KeyStorePassword != nil
	switch {
	case old.Type == cluster.KeyStoreExternal && hsmFields:
		return nil, apiErr(errValidation, "CloudHsmClusterId and KeyStorePassword are not valid for an EXTERNAL_KEY_STORE.")
	case old.Type == cluster.KeyStoreCloudHSM && xksFields:
		return nil, apiErr(errValidation, "XksProxy* parameters are not valid for an AWS_CLOUDHSM key store.")
	}
	if (xksFields || hsmFields) && old.State != cluster.StoreDisconnected {
		return nil, apiErr(errCKSInvalidState, "Custom key store %s is %s; only its name can change while it is not DISCONNECTED.", old.ID, old.State)
	}
	if old.Type == cluster.KeyStoreCloudHSM && hsmFields {
		if err := s.updateHSMStore(r, &cs, in.CloudHsmClusterId, in.KeyStorePassword); err != nil {
			return nil, err
		}
	}
	if old.Type == cluster.KeyStoreExternal && xksFields {
		if in.XksProxyConnectivity != nil && *in.XksProxyConnectivity != "PUBLIC_ENDPOINT" {
			if *in.XksProxyConnectivity == "VPC_ENDPOINT_SERVICE" {
				return nil, apiErr(errXksVpcNotFound, "kmsd runs outside AWS and has no VPC endpoint services; use PUBLIC_ENDPOINT connectivity.")
			}
			return nil, validationEnum("xksProxyConnectivity", *in.XksProxyConnectivity, "PUBLIC_ENDPOINT, VPC_ENDPOINT_SERVICE")
		}
		if in.XksProxyVpcEndpointServiceName != nil || in.XksProxyVpcEndpointServiceOwner != nil {
			return nil, apiErr(errValidation, "XksProxyVpcEndpointServiceName is valid only with VPC_ENDPOINT_SERVICE connectivity.")
		}
		if in.XksProxyUriEndpoint != nil {
			if err := checkXksEndpoint(*in.XksProxyUriEndpoint); err != nil {
				return nil, err
			}
			cs.XksEndpoint = *in.XksProxyUriEndpoint
		}
		if in.XksProxyUriPath != nil {
			if err := checkXksPath(*in.XksProxyUriPath); err != nil {
				return nil, err
			}
			cs.XksPath = *in.XksProxyUriPath
		}
		if c := in.XksProxyAuthenticationCredential; c != nil {
			if err := checkXksCredential(c); err != nil {
				return nil, err
			}
			sealed, err := s.sealStoreSecret(r.ctx, cs.ID, "xks-secret", *c.RawSecretAccessKey)
			if err != nil {
				return nil, err
			}
			cs.XksAccessKeyID, cs.XksSealedSecret = *c.AccessKeyId, sealed
		}
		if _, err := s.xksHealth(r, &cs); err != nil {
			return nil, err
		}
	}
	if _, err := s.apply(r.ctx, &cluster.UpdateKeyStore{Store: cs}); err != nil {
		if errors.Is(err, cluster.ErrKeyStoreInUse) {
			if cs.Type == cluster.KeyStoreCloudHSM {
				return nil, apiErr(errHsmClusterInUse, "The HSM %s is already associated with another custom key store.", cs.CloudHsmClusterID)
			}
			return nil, apiErr(errXksURIInUse, "The proxy endpoint and path are already used by another external key store.")
		}
		return nil, storeErr(err)
	}
	return &emptyResponse{}, nil
}

func opConnectCustomKeyStore(s *Server, r *request) (any, error) {
	var in customKeyStoreIDRequest
	if err := decode(r, &in); err != nil {
		return nil, err
	}
	if err := checkStoreID(in.CustomKeyStoreId); err != nil {
		return nil, err
	}
	if err := s.authorize(r, authReq{action: r.op}); err != nil {
		return nil, err
	}
	cs, err := s.storeFor(*in.CustomKeyStoreId)
	if err != nil {
		return nil, err
	}
	switch cs.State {
	case cluster.StoreConnected, cluster.StoreConnecting:
		return &emptyResponse{}, nil
	case cluster.StoreFailed, cluster.StoreDisconnecting:
		return nil, apiErr(errCKSInvalidState, "Custom key store %s is %s. To reconnect a FAILED store, disconnect it, then connect it.", cs.ID, cs.State)
	}
	if _, err := s.apply(r.ctx, &cluster.SetKeyStoreState{ID: cs.ID, State: cluster.StoreConnecting,
		Expect: []string{cluster.StoreDisconnected}}); err != nil {
		return nil, storeErr(err)
	}
	// AWS connects asynchronously; kmsd's connection is one health check
	// (or one HSM login), so it finishes before answering and
	// DescribeCustomKeyStores shows CONNECTED or FAILED at once.
	var code string
	if cs.Type == cluster.KeyStoreExternal {
		code, _ = s.xksHealth(r, cs)
	} else {
		code = s.connectHSMStore(r.ctx, cs)
	}
	state := cluster.StoreConnected
	if code != "" {
		state = cluster.StoreFailed
		s.log.Warn("custom key store connection failed", "store", cs.ID, "code", code)
	}
	if _, err := s.apply(r.ctx, &cluster.SetKeyStoreState{ID: cs.ID, State: state, ErrorCode: code,
		Expect: []string{cluster.StoreConnecting}}); err != nil {
		return nil, storeErr(err)
	}
	return &emptyResponse{}, nil
}

func opDisconnectCustomKeyStore(s *Server, r *request) (any, error) {
	var in customKeyStoreIDRequest
	if err := decode(r, &in); err != nil {
		return nil, err
	}
	if err := checkStoreID(in.CustomKeyStoreId); err != nil {
		return nil, err
	}
	if err := s.authorize(r, authReq{action: r.op}); err != nil {
		return nil, err
	}
	cs, err := s.storeFor(*in.CustomKeyStoreId)
	if err != nil {
		return nil, err
	}
	if _, err := s.apply(r.ctx, &cluster.SetKeyStoreState{ID: cs.ID, State: cluster.StoreDisconnected,
		Expect: []string{cluster.StoreConnected, cluster.StoreConnecting, cluster.StoreFailed}}); err != nil {
		if errors.Is(err, cluster.ErrKeyStoreState) {
			return nil, apiErr(errCKSInvalidState, "Custom key store %s is already disconnected.", cs.ID)
		}
		return nil, storeErr(err)
	}
	s.disconnectHSMStore(cs)
	return &emptyResponse{}, nil
}

func opDeleteCustomKeyStore(s *Server, r *request) (any, error) {
	var in customKeyStoreIDRequest
	if err := decode(r, &in); err != nil {
		return nil, err
	}
	if err := checkStoreID(in.CustomKeyStoreId); err != nil {
		return nil, err
	}
	if err := s.authorize(r, authReq{action: r.op}); err != nil {
		return nil, err
	}
	cs, err := s.storeFor(*in.CustomKeyStoreId)
	if err != nil {
		return nil, err
	}
	if _, err := s.apply(r.ctx, &cluster.DeleteKeyStore{ID: cs.ID}); err != nil {
		return nil, storeErr(err)
	}
	return &emptyResponse{}, nil
}

// closeStores closes this node's HSM key store sessions and XKS
// connections (Shutdown).
func (s *Server) closeStores() {
	s.stores.hsm.closeAll()
	c := &s.stores.xks
	c.mu.Lock()
	for id, e := range c.m {
		e.c.Close()
		delete(c.m, id)
	}
	c.mu.Unlock()
}
