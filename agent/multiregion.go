package agent

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/kmsd/kmsd/cluster"
)

// Multi-Region keys (README "Multi-Region keys"). Each kmsd cluster is a
// Region; Config.Peers names the other Regions and how to reach them. The
// primary key's cluster is the source of the shared properties (material
// and its versions, rotation settings, the multi-Region configuration): its
// leader pushes them to every replica from the timers (syncMultiRegion)
// until each replica has acknowledged the current configuration and
// material versions, so a replica that was unreachable catches up when it
// returns. Cluster-to-cluster calls are KmsdCluster.Mrk* operations signed
// with the peer account root's access key. Key material crosses between
// clusters only wrapped with RSA-OAEP for the receiving HSM's peer
// transport key (hsmpool.ExportMaterial / ImportMaterial).

// Peer is another kmsd cluster serving another Region.
type Peer struct {
	Region string
	URL    string    // the API URL of a node of that cluster
	Key    AccessKey // an access key of that cluster's account root
}

// mrState is the Server's multi-Region bookkeeping.
type mrState struct {
	mu    sync.Mutex
	peers map[string]Peer
	// synced remembers, per key id and replica Region, what that replica
	// last acknowledged (leader memory only: after a restart or a change of
	// leader every replica is pushed once more; pushes are idempotent).
	synced map[string]map[string]syncMark
}

type syncMark struct {
	gen      uint64
	versions uint32
	rotation cluster.RotationSync
	material string // importMaterialID
	at       time.Time
}

// importVersionsOf is what a replica learns of k's imported material
// versions: nil until k's material has been rotated (the first version's
// fingerprint travels as ImportMaterialID).
func importVersionsOf(k *cluster.Key) []cluster.ImportVersionSync {
	if k.Origin != cluster.OriginExternal || k.Import == nil || len(k.Import.Versions) < 2 {
		return nil
	}
	out := make([]cluster.ImportVersionSync, len(k.Import.Versions))
	for i, v := range k.Import.Versions {
		out[i] = cluster.ImportVersionSync{MaterialID: v.MaterialID, Created: v.Created, RotationType: v.RotationType}
	}
	return out
}

// importMark says what a replica has been told of k's imported material:
// the first fingerprint and how many versions.
func importMark(k *cluster.Key) string {
	if k.Origin != cluster.OriginExternal || k.Import == nil {
		return ""
	}
	return fmt.Sprintf("%s/%d", k.Import.MaterialID, len(k.Import.Versions))
}

// importMaterialID is the fingerprint of a key's imported material ("" for
// other keys and before the first import).
func importMaterialID(k *cluster.Key) string {
	if k.Import == nil {
		return ""
	}
	return k.Import.MaterialID
}

// resyncAfter is how long an acknowledged replica goes without a push; the
// periodic push notices replicas deleted while their primary could not be
// told.
const resyncAfter = time.Minute

// peerTimerTimeout bounds each peer call the timers make, so a peer that
// does not answer delays the other timer work by at most this much.
const peerTimerTimeout = 5 * time.Second

// SetPeers replaces the peer Regions this cluster replicates to and syncs
// with. It is safe to call while serving.
func (s *Server) SetPeers(peers []Peer) {
	m := make(map[string]Peer, len(peers))
	for _, p := range peers {
		m[p.Region] = p
	}
	s.mr.mu.Lock()
	s.mr.peers = m
	s.mr.mu.Unlock()
}

func (s *Server) peer(region string) (Peer, bool) {
	s.mr.mu.Lock()
	defer s.mr.mu.Unlock()
	p, ok := s.mr.peers[region]
	return p, ok
}

func (s *Server) mark(keyID, region string) (syncMark, bool) {
	s.mr.mu.Lock()
	defer s.mr.mu.Unlock()
	m, ok := s.mr.synced[keyID][region]
	return m, ok
}

func (s *Server) setMark(keyID, region string, m syncMark) {
	s.mr.mu.Lock()
	defer s.mr.mu.Unlock()
	if s.mr.synced == nil {
		s.mr.synced = map[string]map[string]syncMark{}
	}
	if s.mr.synced[keyID] == nil {
		s.mr.synced[keyID] = map[string]syncMark{}
	}
	s.mr.synced[keyID][region] = m
}

// newMultiRegionKeyID returns "mrk-" and 32 random hex digits, as AWS.
func newMultiRegionKeyID() string {
	b := make([]byte, 16)
	rand.Read(b)
	return "mrk-" + hex.EncodeToString(b)
}

// regionArn is the ARN of key id in region (same partition and account).
func (s *Server) regionArn(region, id string) string {
	return "arn:" + s.partition + ":kms:" + region + ":" + s.cfg.AccountID + ":key/" + id
}

// ---- wire types ----

type multiRegionKeyWire struct {
	Arn    string `json:"Arn"`
	Region string `json:"Region"`
}

type multiRegionConfigWire struct {
	MultiRegionKeyType string               `json:"MultiRegionKeyType"`
	PrimaryKey         multiRegionKeyWire   `json:"PrimaryKey"`
	ReplicaKeys        []multiRegionKeyWire `json:"ReplicaKeys"`
}

func multiRegionConfig(mr *cluster.MultiRegion) *multiRegionConfigWire {
	if mr == nil {
		return nil
	}
	out := &multiRegionConfigWire{MultiRegionKeyType: mr.Type,
		PrimaryKey:  multiRegionKeyWire{Arn: mr.Primary.Arn, Region: mr.Primary.Region},
		ReplicaKeys: make([]multiRegionKeyWire, 0, len(mr.Replicas))}
	for _, r := range mr.Replicas {
		out.ReplicaKeys = append(out.ReplicaKeys, multiRegionKeyWire{Arn: r.Arn, Region: r.Region})
	}
	return out
}

type replicateKeyRequest struct {
	KeyId                          *string   `json:"KeyId"`
	ReplicaRegion                  *string   `json:"ReplicaRegion"`
	Policy                         *string   `json:"Policy"`
	BypassPolicyLockoutSafetyCheck bool      `json:"BypassPolicyLockoutSafetyCheck"`
	Description                    *string   `json:"Description"`
	Tags                           []tagWire `json:"Tags"`
}

type replicateKeyResponse struct {
	ReplicaKeyMetadata keyMetadata `json:"ReplicaKeyMetadata"`
	ReplicaPolicy      string      `json:"ReplicaPolicy"`
	ReplicaTags        []tagWire   `json:"ReplicaTags"`
}

type updatePrimaryRegionRequest struct {
	KeyId         *string `json:"KeyId"`
	PrimaryRegion *string `json:"PrimaryRegion"`
}

// transportedMaterial is one material version on its way to a peer: Key
// is RSA-OAEP output for the peer's transport key, never plaintext.
type transportedMaterial struct {
	Version      uint32 `json:"Version"`
	Key          []byte `json:"Key"`
	Created      int64  `json:"Created"`
	RotationType string `json:"RotationType,omitempty"`
	ID           string `json:"Id"`
}

type mrkTransportKeyResponse struct {
	PublicKey []byte `json:"PublicKey"`
}

type mrkCreateReplicaRequest struct {
	KeyId       string                `json:"KeyId"`
	Config      cluster.MultiRegion   `json:"Config"`
	KeySpec     string                `json:"KeySpec"`
	KeyUsage    string                `json:"KeyUsage"`
	Origin      string                `json:"Origin"`
	Materials   []transportedMaterial `json:"Materials"`
	Import      *importSync           `json:"Import,omitempty"`
	Rotation    cluster.RotationSync  `json:"Rotation"`
	Description string                `json:"Description"`
	Policy      *string               `json:"Policy,omitempty"`
	Bypass      bool                  `json:"Bypass"`
	Tags        []tagWire             `json:"Tags"`
	// Caller made the ReplicateKey request; the replica's cluster checks
	// its permissions there (asCaller).
	Caller *callerOf `json:"Caller,omitempty"`
}

// importSync is what a replica of a key with imported material gets from
// its primary instead of the material: the primary's material fingerprint
// (once it has had material) and the fingerprint key (symmetric and HMAC
// keys), wrapped for the replica's HSM like material.
type importSync struct {
	MaterialID     string               `json:"MaterialId,omitempty"`
	FingerprintKey *transportedMaterial `json:"FingerprintKey,omitempty"`
}

type mrkSyncRequest struct {
	KeyId     string                `json:"KeyId"`
	Config    cluster.MultiRegion   `json:"Config"`
	Materials []transportedMaterial `json:"Materials"`
	// ImportMaterialID is the primary's imported-material fingerprint.
	ImportMaterialID string `json:"ImportMaterialId,omitempty"`
	// ImportVersions lists the primary's imported material versions once
	// it has rotated them (cluster.SetMultiRegion.ImportVersions).
	ImportVersions []cluster.ImportVersionSync `json:"ImportVersions,omitempty"`
	Rotation       cluster.RotationSync        `json:"Rotation"`
	// Promote asks the receiver to become the primary (UpdatePrimaryRegion):
	// it takes Config and goes to Updating.
	Promote bool `json:"Promote,omitempty"`
	// Caller made the UpdatePrimaryRegion request (asCaller).
	Caller *callerOf `json:"Caller,omitempty"`
}

type mrkSyncResponse struct {
	Versions uint32 `json:"Versions"`
	Gen      uint64 `json:"Gen"`
}

type mrkKeyRegionRequest struct {
	KeyId  string `json:"KeyId"`
	Region string `json:"Region"`
}

func init() {
	clusterOps["MrkTransportKey"] = opMrkTransportKey
	clusterOps["MrkCreateReplica"] = opMrkCreateReplica
	clusterOps["MrkAbortReplica"] = opMrkAbortReplica
	clusterOps["MrkSync"] = opMrkSync
	clusterOps["MrkReplicaDeleted"] = opMrkReplicaDeleted
	clusterOps["MrkDescribe"] = opMrkDescribe
}

// ---- peer calls ----

// callPeer calls cluster operation op on peer p. A peer that cannot be
// reached gives errPeerDown.
func (s *Server) callPeer(ctx context.Context, p Peer, op string, in, out any) error {
	err := CallCluster(ctx, p.URL, p.Region, p.Key, op, in, out)
	var ae *APIError
	if err != nil && !errors.As(err, &ae) {
		return fmt.Errorf("%w: %s: %v", errPeerDown, p.Region, err)
	}
	return err
}

var errPeerDown = errors.New("agent: peer Region unreachable")

// exportMaterials wraps ms for peer p's HSM: it fetches p's peer transport
// public key and has this node's HSM re-wrap each version for it.
func (s *Server) exportMaterials(ctx context.Context, p Peer, ms []cluster.Material) ([]transportedMaterial, error) {
	if len(ms) == 0 {
		return nil, nil
	}
	var tk mrkTransportKeyResponse
	if err := s.callPeer(ctx, p, "MrkTransportKey", struct{}{}, &tk); err != nil {
		return nil, err
	}
	out := make([]transportedMaterial, 0, len(ms))
	for _, m := range ms {
		w, err := s.pool.ExportMaterial(ctx, m.Wrapped, tk.PublicKey)
		if err != nil {
			return nil, err
		}
		out = append(out, transportedMaterial{Version: m.Version, Key: w, Created: m.Created, RotationType: m.RotationType, ID: materialID(m)})
	}
	return out, nil
}

// importMaterials re-wraps transported material under this node's domain
// key, skipping versions at or below after.
func (s *Server) importMaterials(ctx context.Context, tms []transportedMaterial, after uint32) ([]cluster.Material, error) {
	var out []cluster.Material
	for _, tm := range tms {
		if tm.Version <= after {
			continue
		}
		w, err := s.pool.ImportMaterial(ctx, tm.Key)
		if err != nil {
			return nil, apiErr(errValidation, "Key material version %d could not be imported: %v", tm.Version, err)
		}
		out = append(out, cluster.Material{Version: tm.Version, Wrapped: w, Created: tm.Created, RotationType: tm.RotationType, ID: tm.ID})
	}
	return out, nil
}

// sharedMaterials is the material a primary shares with its replicas:
// all of it, except for keys with imported material, whose replicas take
// their own import of the same material.
func sharedMaterials(k *cluster.Key) []cluster.Material {
	if k.Origin == cluster.OriginExternal {
		return nil
	}
	return k.Materials
}

// importSyncOf is what a new replica of k in p's Region gets of k's import
// state (nil unless k has imported material).
func (s *Server) importSyncOf(ctx context.Context, p Peer, k *cluster.Key) (*importSync, error) {
	if k.Origin != cluster.OriginExternal || k.Import == nil {
		return nil, nil
	}
	out := &importSync{MaterialID: k.Import.MaterialID}
	if len(k.Import.FingerprintKey) > 0 {
		tms, err := s.exportMaterials(ctx, p, []cluster.Material{{Version: 1, Wrapped: k.Import.FingerprintKey}})
		if err != nil {
			return nil, err
		}
		out.FingerprintKey = &tms[0]
	}
	return out, nil
}

func lastVersion(k *cluster.Key) uint32 {
	if m, ok := k.CurrentMaterial(); ok {
		return m.Version
	}
	return 0
}

func rotationOf(k *cluster.Key) cluster.RotationSync {
	return cluster.RotationSync{Enabled: k.RotationEnabled, Days: k.RotationDays, Next: k.NextRotation}
}

// peerError turns a failed call to peer region into the API's answer.
func peerError(region string, err error, what string) error {
	var ae *APIError
	if errors.As(err, &ae) {
		switch ae.Type {
		case errAlreadyExists, errMalformedPolicy, errTag, errLimitExceeded, errInvalidState, errDisabled, errNotFound:
			return ae // about the request: the caller can act on it
		case errAccessDenied:
			if strings.HasPrefix(ae.Message, callerDeniedPrefix) { // the caller's own permissions there
				return apiErr(errAccessDenied, "%s (in %s); %s.", strings.TrimPrefix(ae.Message, callerDeniedPrefix), region, what)
			}
		}
		// Anything else (refused credentials, a failed import) is this
		// service's problem, not the caller's.
		return apiErr(errInternal, "Region %s answered %s (%s); %s.", region, ae.Type, ae.Message, what)
	}
	if errors.Is(err, errPeerDown) {
		return apiErr(errInternal, "Region %s cannot be reached; %s. The request can be retried.", region, what)
	}
	return err
}

// callerDeniedPrefix starts the AccessDeniedException a peer answers
// when the caller it was told of lacks a permission there, so that the
// calling Region passes it on (a refusal of the peer credentials is this
// service's problem, not the caller's).
const callerDeniedPrefix = "In this Region: "

// callerOf is who made a multi-Region request, as the calling Region
// authenticated it: what a peer needs to check that caller's permissions
// in its own Region (asCaller).
type callerOf struct {
	Principal  string `json:"Principal"`
	SourceIP   string `json:"SourceIp,omitempty"`
	ViaService string `json:"ViaService,omitempty"`
}

func (r *request) caller() *callerOf {
	return &callerOf{Principal: r.principal, SourceIP: r.remoteIP(), ViaService: r.viaService}
}

// asCaller runs check (authorize, the key policy's lockout check) in this
// Region as the caller of a multi-Region operation whose permissions the
// API reference asks for here (ReplicateKey: kms:CreateKey, and
// kms:TagResource for tags, in an IAM policy of the replica's Region;
// UpdatePrimaryRegion: kms:UpdatePrimaryRegion on the replica key). The
// peer call is made as the account root; c names the principal of the
// request that made it, its address (aws:SourceIp) and its service
// (kms:ViaService), as the calling Region saw them. Without c (a kmsd
// that does not send it) check runs as the peer call's principal, the
// account root. Principals are this cluster's own: one known only in
// another Region has no identity policy here, hence no permission. A
// denial is marked (callerDeniedPrefix) so that the calling Region passes
// it on.
func (s *Server) asCaller(r *request, c *callerOf, check func() error) error {
	if c != nil && c.Principal != "" {
		principal, ip, via := r.principal, r.sourceIP, r.viaService
		defer func() { r.principal, r.sourceIP, r.viaService = principal, ip, via }()
		r.principal, r.sourceIP, r.viaService = c.Principal, c.SourceIP, c.ViaService
	}
	err := check()
	var ae *APIError
	if errors.As(err, &ae) && ae.Type == errAccessDenied {
		return apiErr(errAccessDenied, "%s%s", callerDeniedPrefix, ae.Message)
	}
	return err
}

// ---- API operations ----

func opReplicateKey(s *Server, r *request) (any, error) {
	var in replicateKeyRequest
	if err := decode(r, &in); err != nil {
		return nil, err
	}
	if in.KeyId == nil {
		return nil, validationRequired("keyId")
	}
	if in.ReplicaRegion == nil {
		return nil, validationRequired("replicaRegion")
	}
	region := *in.ReplicaRegion
	if n := len(region); n < 1 || n > 32 {
		return nil, validationLength("replicaRegion", 1, 32)
	}
	if !validRegion(region) {
		return nil, apiErr(errValidation, "Value '%s' at 'replicaRegion' failed to satisfy constraint: Member must satisfy regular expression pattern: ^([a-z]+-){2,3}\\d+$", region)
	}
	if in.Description != nil && utf8.RuneCountInString(*in.Description) > maxDescription {
		return nil, validationLength("description", 0, maxDescription)
	}
	if in.Policy != nil && (len(*in.Policy) < 1 || len(*in.Policy) > maxPolicyBytes) {
		return nil, validationLength("policy", 1, maxPolicyBytes)
	}
	if _, err := checkTags(in.Tags); err != nil {
		return nil, err
	}
	k, err := s.resolveKey(*in.KeyId, false)
	if err != nil {
		return nil, err
	}
	conds := map[string][]string{"kms:replicaregion": {region}}
	if k.MR != nil {
		conds["kms:multiregionkeytype"] = []string{k.MR.Type}
		conds["kms:primaryregion"] = []string{k.MR.Primary.Region}
	}
	if err := s.authorize(r, authReq{action: r.op, key: k, conds: conds}); err != nil {
		return nil, err
	}
	if err := s.checkKeyState(r.op, k); err != nil {
		return nil, err
	}
	switch {
	case k.MR == nil:
		return nil, apiErr(errUnsupported, "%s is not a multi-Region key; only a multi-Region primary key can be replicated.", k.Arn)
	case k.IsReplica():
		return nil, apiErr(errUnsupported, "%s is a multi-Region replica key; only its primary key (%s) can be replicated.", k.Arn, k.MR.Primary.Arn)
	case region == s.cfg.Region:
		return nil, apiErr(errAlreadyExists, "%s is the primary key in %s; a replica must be in another Region.", k.Arn, region)
	case k.MR.HasRegion(region):
		return nil, apiErr(errAlreadyExists, "%s already has a replica key in %s.", k.Arn, region)
	}
	if k.Origin != originAWSKMS && k.Origin != cluster.OriginExternal {
		return nil, apiErr(errUnsupported, "Replicas of %s keys are not supported by this kmsd.", k.Origin)
	}
	p, ok := s.peer(region)
	if !ok {
		return nil, apiErr(errUnsupported, "Region %s is not a Region this kmsd can replicate to (see --peer-region).", region)
	}
	// A replica of a key with imported material is made without material
	// (PendingImport once created): it gets what tells the same material
	// from other material instead (importSyncOf).
	tms, err := s.exportMaterials(r.ctx, p, sharedMaterials(k))
	if err != nil {
		return nil, peerError(region, err, "no replica key was created")
	}
	imp, err := s.importSyncOf(r.ctx, p, k)
	if err != nil {
		return nil, peerError(region, err, "no replica key was created")
	}
	cfg := cluster.MultiRegion{Type: cluster.MultiRegionReplica, Primary: k.MR.Primary,
		Replicas: append(slices.Clone(k.MR.Replicas), cluster.RegionKey{Region: region, Arn: s.regionArn(region, k.ID)}),
		Gen:      k.MR.Gen + 1}
	req := mrkCreateReplicaRequest{KeyId: k.ID, Config: cfg, KeySpec: k.KeySpec, KeyUsage: k.KeyUsage, Origin: k.Origin,
		Materials: tms, Import: imp, Rotation: rotationOf(k), Policy: in.Policy, Bypass: in.BypassPolicyLockoutSafetyCheck, Tags: in.Tags,
		Caller: r.caller()}
	if in.Description != nil {
		req.Description = *in.Description
	}
	var out replicateKeyResponse
	if err := s.callPeer(r.ctx, p, "MrkCreateReplica", req, &out); err != nil {
		if errors.Is(err, errPeerDown) {
			// The peer may have made the key before the answer was lost.
			s.abortReplica(p, k.ID)
		}
		return nil, peerError(region, err, "no replica key was created")
	}
	_, err = s.apply(r.ctx, &cluster.AddReplica{KeyID: k.ID, Replica: cluster.RegionKey{Region: region, Arn: out.ReplicaKeyMetadata.Arn}})
	if err != nil {
		s.abortReplica(p, k.ID)
		if errors.Is(err, cluster.ErrKeyExists) {
			return nil, apiErr(errAlreadyExists, "%s already has a replica key in %s.", k.Arn, region)
		}
		if errors.Is(err, cluster.ErrInvalidState) || errors.Is(err, cluster.ErrKeyNotFound) {
			return nil, apiErr(errInvalidState, "%s changed while the request ran; no replica key was created. Retry.", k.Arn)
		}
		return nil, err
	}
	s.log.Info("replicated multi-Region key", "key", k.Arn, "region", region)
	if out.ReplicaTags == nil {
		out.ReplicaTags = []tagWire{}
	}
	return &out, nil
}

// abortReplica removes a half-made replica (still Creating) from peer p,
// best effort: a replica the primary never recorded is also refused by the
// sync, and stays Creating (unusable) until removed.
func (s *Server) abortReplica(p Peer, keyID string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.callPeer(ctx, p, "MrkAbortReplica", mrkKeyRegionRequest{KeyId: keyID}, nil); err != nil {
		var ae *APIError
		if !errors.As(err, &ae) || ae.Type != errNotFound {
			s.log.Warn("could not remove a half-made replica key", "key", keyID, "region", p.Region, "err", err)
		}
	}
}

func opUpdatePrimaryRegion(s *Server, r *request) (any, error) {
	var in updatePrimaryRegionRequest
	if err := decode(r, &in); err != nil {
		return nil, err
	}
	if in.KeyId == nil {
		return nil, validationRequired("keyId")
	}
	if in.PrimaryRegion == nil {
		return nil, validationRequired("primaryRegion")
	}
	region := *in.PrimaryRegion
	if n := len(region); n < 1 || n > 32 {
		return nil, validationLength("primaryRegion", 1, 32)
	}
	k, err := s.resolveKey(*in.KeyId, false)
	if err != nil {
		return nil, err
	}
	conds := map[string][]string{"kms:primaryregion": {region}}
	if k.MR != nil {
		conds["kms:multiregionkeytype"] = []string{k.MR.Type}
	}
	if err := s.authorize(r, authReq{action: r.op, key: k, conds: conds}); err != nil {
		return nil, err
	}
	if err := s.checkKeyState(r.op, k); err != nil {
		return nil, err
	}
	switch {
	case k.MR == nil:
		return nil, apiErr(errUnsupported, "%s is not a multi-Region key.", k.Arn)
	case k.IsReplica():
		return nil, apiErr(errUnsupported, "%s is a multi-Region replica key; call UpdatePrimaryRegion on its primary key (%s).", k.Arn, k.MR.Primary.Arn)
	case region == s.cfg.Region:
		return nil, apiErr(errValidation, "%s is already the primary key; PrimaryRegion must name a Region of one of its replica keys.", k.Arn)
	}
	i := slices.IndexFunc(k.MR.Replicas, func(rk cluster.RegionKey) bool { return rk.Region == region })
	if i < 0 {
		return nil, apiErr(errNotFound, "%s has no replica key in %s.", k.Arn, region)
	}
	p, ok := s.peer(region)
	if !ok {
		return nil, apiErr(errUnsupported, "Region %s is not a Region this kmsd can reach (see --peer-region).", region)
	}
	replicas := slices.Delete(slices.Clone(k.MR.Replicas), i, i+1)
	replicas = append(replicas, k.MR.Primary)
	newCfg := cluster.MultiRegion{Type: cluster.MultiRegionPrimary, Primary: k.MR.Replicas[i], Replicas: replicas, Gen: k.MR.Gen + 1}
	// The new primary first: if it refuses or cannot be reached, nothing
	// has changed here.
	tms, err := s.exportMaterials(r.ctx, p, k.Materials)
	if err != nil {
		return nil, peerError(region, err, "the primary Region is unchanged")
	}
	req := mrkSyncRequest{KeyId: k.ID, Config: newCfg, Materials: tms, Rotation: rotationOf(k), Promote: true, Caller: r.caller(),
		ImportMaterialID: importMaterialID(k), ImportVersions: importVersionsOf(k)}
	if err := s.callPeer(r.ctx, p, "MrkSync", req, nil); err != nil {
		return nil, peerError(region, err, "the primary Region is unchanged")
	}
	own := newCfg
	own.Type = cluster.MultiRegionReplica
	if err := s.applyKeyChange(r, k, &cluster.SetMultiRegion{KeyID: k.ID, ExpectState: k.State, Config: &own,
		State: cluster.StateUpdating, SavePrev: true}); err != nil {
		s.log.Error("the new primary took over but this key could not follow; the sync from it will", "key", k.Arn, "err", err)
		return nil, err
	}
	s.log.Info("moved the primary Region of a multi-Region key", "key", k.Arn, "to", region)
	return struct{}{}, nil
}

// ---- cluster operations (peer to peer) ----

func opMrkTransportKey(s *Server, r *request) (any, error) {
	if err := requireRoot(s, r); err != nil {
		return nil, err
	}
	pub, err := s.pool.PeerTransportKey(r.ctx)
	if err != nil {
		return nil, err
	}
	return &mrkTransportKeyResponse{PublicKey: pub}, nil
}

func opMrkCreateReplica(s *Server, r *request) (any, error) {
	if err := requireRoot(s, r); err != nil {
		return nil, err
	}
	var in mrkCreateReplicaRequest
	if err := decode(r, &in); err != nil {
		return nil, err
	}
	id := in.KeyId
	if len(id) != 36 || !looksLikeKeyID(id) || id[:4] != "mrk-" {
		return nil, apiErr(errValidation, "%q is not a multi-Region key id.", id)
	}
	arn := s.keyArn(id)
	if in.Config.Type != cluster.MultiRegionReplica || !slices.Contains(in.Config.Replicas, cluster.RegionKey{Region: s.cfg.Region, Arn: arn}) {
		return nil, apiErr(errValidation, "The configuration does not name %s as a replica key.", arn)
	}
	if in.Config.Primary.Region == s.cfg.Region {
		return nil, apiErr(errAlreadyExists, "The primary key is in this Region.")
	}
	if len(in.Materials) == 0 && in.Origin != cluster.OriginExternal {
		return nil, apiErr(errValidation, "A replica key needs key material.")
	}
	if utf8.RuneCountInString(in.Description) > maxDescription {
		return nil, validationLength("description", 0, maxDescription)
	}
	if _, exists := s.node.Key(id); exists {
		return nil, apiErr(errAlreadyExists, "%s already exists. If it is pending deletion, cancel its deletion instead.", arn)
	}
	tags, err := checkTags(in.Tags)
	if err != nil {
		return nil, err
	}
	conds := map[string][]string{"kms:keyspec": {in.KeySpec}, "kms:keyusage": {in.KeyUsage}, "kms:keyorigin": {in.Origin},
		"kms:multiregion": {"true"}, "kms:multiregionkeytype": {cluster.MultiRegionReplica}}
	if err := s.asCaller(r, in.Caller, func() error { return s.authorize(r, authReq{action: "CreateKey", conds: conds}) }); err != nil {
		return nil, err
	}
	if len(tags) > 0 {
		if err := s.asCaller(r, in.Caller, func() error {
			return s.authorize(r, authReq{action: "TagResource", resource: arn, conds: conds})
		}); err != nil {
			return nil, err
		}
	}
	policy := s.defaultPolicyText
	if in.Policy != nil {
		// The lockout check asks whether the caller could still manage
		// the key.
		if err := s.asCaller(r, in.Caller, func() error { return s.checkKeyPolicy(r, *in.Policy, arn, in.Bypass) }); err != nil {
			return nil, err
		}
		policy = *in.Policy
	}
	ms, err := s.importMaterials(r.ctx, in.Materials, 0)
	if err != nil {
		return nil, err
	}
	for i, m := range ms {
		if m.Version != uint32(i+1) {
			return nil, apiErr(errValidation, "Key material versions must be 1..n in order.")
		}
	}
	var imp *cluster.KeyImport
	if in.Origin == cluster.OriginExternal {
		if len(ms) != 0 {
			return nil, apiErr(errValidation, "A replica of a key with imported key material takes no material.")
		}
		imp = &cluster.KeyImport{}
		if in.Import != nil {
			imp.MaterialID = in.Import.MaterialID
			if fk := in.Import.FingerprintKey; fk != nil {
				w, err := s.importMaterials(r.ctx, []transportedMaterial{*fk}, 0)
				if err != nil || len(w) != 1 {
					return nil, apiErr(errValidation, "The fingerprint key could not be imported: %v", err)
				}
				imp.FingerprintKey = w[0].Wrapped
			}
		}
	}
	cfg := in.Config
	k := &cluster.Key{
		ID: id, Arn: arn, AccountID: s.cfg.AccountID, Created: s.cfg.Now().UnixNano(), Import: imp,
		Description: in.Description, KeySpec: in.KeySpec, KeyUsage: in.KeyUsage, Origin: in.Origin, KeyManager: "CUSTOMER",
		State: cluster.StateCreating, MultiRegion: true, MR: &cfg, Materials: ms, Tags: tags, Policy: policy,
		RotationEnabled: in.Rotation.Enabled, RotationDays: in.Rotation.Days, NextRotation: in.Rotation.Next,
	}
	_, err = s.apply(r.ctx, &cluster.CreateKey{Key: k, MaxKeys: s.cfg.MaxKeys})
	switch {
	case errors.Is(err, cluster.ErrLimitExceeded):
		return nil, apiErr(errLimitExceeded, "The request was rejected because the account has reached its quota of KMS keys in %s.", s.cfg.Region)
	case errors.Is(err, cluster.ErrKeyExists):
		return nil, apiErr(errAlreadyExists, "%s already exists.", arn)
	case err != nil:
		return nil, err
	}
	out := &replicateKeyResponse{ReplicaKeyMetadata: s.metadata(k), ReplicaPolicy: policy, ReplicaTags: make([]tagWire, 0, len(tags))}
	for _, t := range tags {
		out.ReplicaTags = append(out.ReplicaTags, tagWire{TagKey: t.Key, TagValue: t.Value})
	}
	s.log.Info("created multi-Region replica key", "key", arn, "primary", cfg.Primary.Arn)
	return out, nil
}

// opMrkAbortReplica deletes a replica key that is still Creating (its
// primary could not record it).
func opMrkAbortReplica(s *Server, r *request) (any, error) {
	if err := requireRoot(s, r); err != nil {
		return nil, err
	}
	var in mrkKeyRegionRequest
	if err := decode(r, &in); err != nil {
		return nil, err
	}
	k, ok := s.node.Key(in.KeyId)
	if !ok {
		return nil, apiErr(errNotFound, "Key '%s' does not exist", s.keyArn(in.KeyId))
	}
	if !k.IsReplica() || k.State != cluster.StateCreating {
		return nil, apiErr(errInvalidState, "%s is %s, not a replica being created.", k.Arn, k.State)
	}
	if err := s.removeHalfMade(r.ctx, k); err != nil {
		return nil, err
	}
	return struct{}{}, nil
}

// removeHalfMade deletes a replica key that is still Creating.
func (s *Server) removeHalfMade(ctx context.Context, k *cluster.Key) error {
	now := s.cfg.Now().UnixNano()
	if _, err := s.apply(ctx, &cluster.SetMultiRegion{KeyID: k.ID, ExpectState: cluster.StateCreating, State: cluster.StatePendingDeletion}); err != nil {
		return err
	}
	if _, err := s.apply(ctx, &cluster.DeleteKey{KeyID: k.ID, Now: now}); err != nil {
		return err
	}
	s.forgetKey(k)
	s.log.Info("removed a half-made replica key", "key", k.Arn)
	return nil
}

// creatingGrace is how long a replica may stay Creating before its
// cluster asks the primary whether it was recorded at all.
const creatingGrace = time.Minute

type mrkDescribeResponse struct {
	Config cluster.MultiRegion `json:"Config"`
	// PendingMaterialID is the fingerprint of imported material waiting
	// for rotation (NEW_KEY_MATERIAL) in that Region, if any.
	PendingMaterialID string `json:"PendingMaterialId,omitempty"`
}

// opMrkDescribe answers a key's multi-Region configuration (a replica that
// is still Creating asks its primary whether it was recorded).
func opMrkDescribe(s *Server, r *request) (any, error) {
	if err := requireRoot(s, r); err != nil {
		return nil, err
	}
	var in mrkKeyRegionRequest
	if err := decode(r, &in); err != nil {
		return nil, err
	}
	k, ok := s.node.Key(in.KeyId)
	if !ok || k.MR == nil {
		return nil, apiErr(errNotFound, "Key '%s' does not exist", s.keyArn(in.KeyId))
	}
	out := &mrkDescribeResponse{Config: *k.MR}
	if k.Import != nil && k.Import.Pending != nil {
		out.PendingMaterialID = k.Import.Pending.MaterialID
	}
	return out, nil
}

// pendingInReplicas reports whether every replica of the multi-Region
// primary k holds k's pending imported material (the same fingerprint),
// asking each replica's Region: the API reference's condition for
// rotating (the material is PENDING_ROTATION, not
// PENDING_MULTI_REGION_IMPORT_AND_ROTATION). missing names the Regions
// that do not, or did not answer.
func (s *Server) pendingInReplicas(ctx context.Context, k *cluster.Key) (missing []string) {
	if !k.IsPrimary() || k.Import == nil || k.Import.Pending == nil {
		return nil
	}
	want := k.Import.Pending.MaterialID
	have := make([]bool, len(k.MR.Replicas))
	var wg sync.WaitGroup
	for i, rep := range k.MR.Replicas {
		p, ok := s.peer(rep.Region)
		if !ok {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			pctx, cancel := context.WithTimeout(ctx, pendingCheckTimeout)
			defer cancel()
			var out mrkDescribeResponse
			err := s.callPeer(pctx, p, "MrkDescribe", mrkKeyRegionRequest{KeyId: k.ID, Region: s.cfg.Region}, &out)
			have[i] = err == nil && out.PendingMaterialID == want
		}()
	}
	wg.Wait()
	for i, rep := range k.MR.Replicas {
		if !have[i] {
			missing = append(missing, rep.Region)
		}
	}
	return missing
}

// pendingCheckTimeout bounds each replica's answer to pendingInReplicas
// (asked in parallel); one that does not answer counts as lacking the
// material.
const pendingCheckTimeout = 2 * time.Second

// checkCreating removes replica k, Creating for longer than creatingGrace,
// if its primary does not list it (ReplicateKey failed after the replica
// was made and the primary could not remove it then).
func (s *Server) checkCreating(ctx context.Context, k *cluster.Key) error {
	if s.cfg.Now().UnixNano()-k.Created < int64(creatingGrace) {
		return nil
	}
	p, ok := s.peer(k.MR.Primary.Region)
	if !ok {
		return nil
	}
	var out mrkDescribeResponse
	err := s.callPeer(ctx, p, "MrkDescribe", mrkKeyRegionRequest{KeyId: k.ID}, &out)
	var ae *APIError
	switch {
	case errors.As(err, &ae) && ae.Type == errNotFound:
	case err != nil:
		return err
	case out.Config.HasRegion(s.cfg.Region):
		return nil // recorded: the primary's sync will activate it
	}
	err = s.removeHalfMade(ctx, k)
	if errors.Is(err, cluster.ErrInvalidState) {
		return nil // activated meanwhile
	}
	return err
}

// opMrkSync takes the shared properties of a multi-Region key from its
// primary (or, with Promote, makes this key the primary).
func opMrkSync(s *Server, r *request) (any, error) {
	if err := requireRoot(s, r); err != nil {
		return nil, err
	}
	var in mrkSyncRequest
	if err := decode(r, &in); err != nil {
		return nil, err
	}
	k, ok := s.node.Key(in.KeyId)
	if !ok || k.MR == nil {
		return nil, apiErr(errNotFound, "Key '%s' does not exist", s.keyArn(in.KeyId))
	}
	if in.Config.Type != cluster.MultiRegionPrimary && in.Config.Type != cluster.MultiRegionReplica {
		return nil, apiErr(errValidation, "Bad multi-Region key type %q.", in.Config.Type)
	}
	var ms []cluster.Material
	if k.Origin != cluster.OriginExternal { // imported material is imported, never synced
		var err error
		if ms, err = s.importMaterials(r.ctx, in.Materials, lastVersion(k)); err != nil {
			return nil, err
		}
	}
	cfg := in.Config
	c := &cluster.SetMultiRegion{KeyID: k.ID, Config: &cfg, Materials: ms, Rotation: &in.Rotation,
		ImportMaterialID: in.ImportMaterialID, ImportVersions: in.ImportVersions, Activate: cfg.HasRegion(s.cfg.Region)}
	if in.Promote {
		if cfg.Type != cluster.MultiRegionPrimary || cfg.Primary.Region != s.cfg.Region || cfg.Gen <= k.MR.Gen {
			return nil, apiErr(errValidation, "The promotion does not name this Region as the new primary.")
		}
		switch k.State {
		case cluster.StateEnabled, cluster.StateDisabled:
		default:
			return nil, s.checkKeyState("UpdatePrimaryRegion", k)
		}
		conds := map[string][]string{"kms:primaryregion": {s.cfg.Region}, "kms:multiregionkeytype": {k.MR.Type}}
		if err := s.asCaller(r, in.Caller, func() error {
			return s.authorize(r, authReq{action: "UpdatePrimaryRegion", key: k, conds: conds})
		}); err != nil {
			return nil, err
		}
		c.ExpectState, c.State, c.SavePrev, c.Activate = k.State, cluster.StateUpdating, true, false
	} else if cfg.Type != cluster.MultiRegionReplica {
		return nil, apiErr(errValidation, "A sync must describe a replica key.")
	}
	if cluster.ImportVersionsDiverge(k, in.ImportVersions) {
		// Not applied (the rest of the sync is): see README "Rotation of
		// imported material".
		s.log.Error("the primary's imported material versions differ from this replica's; its versions are not taken",
			"key", k.Arn, "primary", cfg.Primary.Region)
	}
	if _, err := s.apply(r.ctx, c); err != nil {
		return nil, err
	}
	cur, _ := s.node.Key(k.ID)
	if cur == nil {
		cur = k
	}
	return &mrkSyncResponse{Versions: lastVersion(cur), Gen: cur.MR.Gen}, nil
}

// opMrkReplicaDeleted tells a primary key that its replica in Region is
// gone.
func opMrkReplicaDeleted(s *Server, r *request) (any, error) {
	if err := requireRoot(s, r); err != nil {
		return nil, err
	}
	var in mrkKeyRegionRequest
	if err := decode(r, &in); err != nil {
		return nil, err
	}
	k, ok := s.node.Key(in.KeyId)
	if !ok {
		return nil, apiErr(errNotFound, "Key '%s' does not exist", s.keyArn(in.KeyId))
	}
	if !k.IsPrimary() {
		return struct{}{}, nil
	}
	// Make sure: the replica must really be gone.
	if p, ok := s.peer(in.Region); ok {
		if _, err := s.pushSync(r.ctx, k, p); err == nil {
			return nil, apiErr(errValidation, "The replica key in %s still exists.", in.Region)
		}
	}
	return struct{}{}, nil
}

// ---- the leader's multi-Region timers ----

// tickMultiRegion ends transient Updating states and pushes the shared
// properties of primary keys to their replicas. Called by Tick on the
// leader.
func (s *Server) tickMultiRegion(ctx context.Context) []error {
	var errs []error
	for _, k := range s.node.Keys() {
		if k.MR == nil {
			continue
		}
		if k.State == cluster.StateUpdating {
			_, err := s.apply(ctx, &cluster.SetMultiRegion{KeyID: k.ID, ExpectState: cluster.StateUpdating, RestorePrev: true})
			if err != nil && !errors.Is(err, cluster.ErrInvalidState) {
				errs = append(errs, err)
			}
			if cur, ok := s.node.Key(k.ID); ok {
				k = cur
			}
		}
		if k.IsReplica() && k.State == cluster.StateCreating {
			pctx, cancel := context.WithTimeout(ctx, peerTimerTimeout)
			if err := s.checkCreating(pctx, k); err != nil {
				errs = append(errs, err)
			}
			cancel()
		}
		if !k.IsPrimary() {
			continue
		}
		for _, rep := range k.MR.Replicas {
			want := syncMark{gen: k.MR.Gen, versions: lastVersion(k), rotation: rotationOf(k), material: importMark(k)}
			m, ok := s.mark(k.ID, rep.Region)
			if k.Origin == cluster.OriginExternal {
				want.versions = m.versions // the replica's own imports, not synced
			}
			if ok && m.gen == want.gen && m.versions == want.versions && m.rotation == want.rotation && m.material == want.material &&
				k.State != cluster.StatePendingReplicaDeletion && time.Since(m.at) < resyncAfter {
				continue
			}
			p, ok := s.peer(rep.Region)
			if !ok {
				errs = append(errs, fmt.Errorf("multi-Region key %s has a replica in %s, which is not a configured peer", k.Arn, rep.Region))
				continue
			}
			pctx, cancel := context.WithTimeout(ctx, peerTimerTimeout)
			if _, err := s.pushSync(pctx, k, p); err != nil {
				errs = append(errs, err)
			}
			cancel()
		}
	}
	return errs
}

// pushSync sends k's shared properties to the replica in p's Region and
// records what it acknowledged. A replica that no longer exists is removed
// from k's configuration (which may start k's own waiting period).
func (s *Server) pushSync(ctx context.Context, k *cluster.Key, p Peer) (mrkSyncResponse, error) {
	var out mrkSyncResponse
	have, _ := s.mark(k.ID, p.Region)
	var send []cluster.Material
	for _, m := range sharedMaterials(k) {
		if m.Version > have.versions {
			send = append(send, m)
		}
	}
	tms, err := s.exportMaterials(ctx, p, send)
	if err == nil {
		cfg := *k.MR
		cfg.Type = cluster.MultiRegionReplica
		err = s.callPeer(ctx, p, "MrkSync", mrkSyncRequest{KeyId: k.ID, Config: cfg, Materials: tms, Rotation: rotationOf(k),
			ImportMaterialID: importMaterialID(k), ImportVersions: importVersionsOf(k)}, &out)
	}
	var ae *APIError
	if errors.As(err, &ae) && ae.Type == errNotFound {
		if _, err := s.apply(ctx, &cluster.RemoveReplica{KeyID: k.ID, Region: p.Region, Now: s.cfg.Now().UnixNano()}); err != nil {
			return out, err
		}
		s.log.Info("replica key is gone; removed it from the multi-Region configuration", "key", k.Arn, "region", p.Region)
		s.mr.mu.Lock()
		delete(s.mr.synced[k.ID], p.Region)
		s.mr.mu.Unlock()
		return out, ae
	}
	if err != nil {
		return out, fmt.Errorf("sync %s to %s: %w", k.Arn, p.Region, err)
	}
	if out.Versions < lastVersion(k) && k.Origin != cluster.OriginExternal {
		// The replica is missing versions it should have had: send all next time.
		out.Versions = 0
	}
	s.setMark(k.ID, p.Region, syncMark{gen: out.Gen, versions: out.Versions, rotation: rotationOf(k), material: importMark(k), at: time.Now()})
	return out, nil
}

// replicaDeleted tells the primary of a deleted replica key that it is
// gone, best effort (the primary's periodic push finds out otherwise).
func (s *Server) replicaDeleted(ctx context.Context, k *cluster.Key) {
	if !k.IsReplica() {
		return
	}
	p, ok := s.peer(k.MR.Primary.Region)
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, peerTimerTimeout)
	defer cancel()
	if err := s.callPeer(ctx, p, "MrkReplicaDeleted", mrkKeyRegionRequest{KeyId: k.ID, Region: s.cfg.Region}, nil); err != nil {
		s.log.Warn("could not tell the primary Region that a replica key was deleted", "key", k.Arn, "err", err)
	}
}

// forgetKey drops what this node caches of a deleted key.
func (s *Server) forgetKey(k *cluster.Key) {
	for _, m := range k.Materials {
		s.pool.Forget(m.Wrapped)
	}
	s.usage.forget(k.ID)
}

// scheduleMRDeletion schedules the deletion of a multi-Region key: a
// primary with replicas goes to PendingReplicaDeletion and its waiting
// period starts when the last replica is deleted.
func (s *Server) scheduleMRDeletion(r *request, k *cluster.Key, now int64, days int32) (any, error) {
	if err := s.applyKeyChange(r, k, &cluster.ScheduleMRDeletion{KeyID: k.ID, Now: now, PendingDays: days}); err != nil {
		return nil, err
	}
	st := cluster.StatePendingDeletion
	if cur, ok := s.node.Key(k.ID); ok { // read-your-writes: this node has applied it
		st = cur.State
	}
	out := &scheduleKeyDeletionResponse{KeyId: k.Arn, KeyState: st, PendingWindowInDays: days}
	if st == cluster.StatePendingDeletion {
		d := epoch(now + int64(days)*int64(day))
		out.DeletionDate = &d
	}
	return out, nil
}
