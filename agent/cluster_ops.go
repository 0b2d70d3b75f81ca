package agent

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"

	"github.com/kmsd/kmsd/cluster"
	"github.com/kmsd/kmsd/hsmpool"
)

// Cluster administration and forwarding travel on the API port as
// operations of a kmsd-only target prefix, authenticated by SigV4 like every
// API call and allowed only to the account root.
const clusterPrefix = "KmsdCluster."

var clusterOps = map[string]opFunc{
	"Apply":  opClusterApply,
	"Join":   opClusterJoin,
	"Status": opClusterStatus,
	"Remove": opClusterRemove,
}

// apply proposes c through raft: locally on the leader, otherwise by
// forwarding it to the leader's API. Either way it returns only once this
// node's own state has applied the command (read-your-writes).
func (s *Server) apply(ctx context.Context, c cluster.Command) (any, error) {
	v, err := s.node.Apply(ctx, c)
	if !errors.Is(err, cluster.ErrNotLeader) {
		return v, err
	}
	data, err := cluster.EncodeCommand(c)
	if err != nil {
		return nil, err
	}
	// The leader may be changing: try until ctx ends, briefly spaced.
	for {
		v, err := s.forward(ctx, data)
		if !errors.Is(err, cluster.ErrNotLeader) {
			return v, err
		}
		select {
		case <-ctx.Done():
			return nil, err
		case <-time.After(50 * time.Millisecond):
		}
		// Past the deadline (its timer may not have closed Done yet): the
		// answer is still that no leader took the write.
		if dl, ok := ctx.Deadline(); ok && !time.Now().Before(dl) {
			return nil, err
		}
		if v, err := s.node.Apply(ctx, c); !errors.Is(err, cluster.ErrNotLeader) {
			return v, err
		}
	}
}

type clusterApplyRequest struct {
	Command []byte `json:"Command"`
}

type clusterApplyResponse struct {
	Index        uint64 `json:"Index"`
	Value        []byte `json:"Value,omitempty"`
	ErrorCode    string `json:"ErrorCode,omitempty"`
	ErrorMessage string `json:"ErrorMessage,omitempty"`
}

// forward sends an encoded command to the leader and waits until this node
// has applied the index it was committed at.
func (s *Server) forward(ctx context.Context, data []byte) (any, error) {
	var out clusterApplyResponse
	if err := s.callLeader(ctx, "Apply", clusterApplyRequest{Command: data}, &out); err != nil {
		return nil, err
	}
	if out.Index > 0 {
		if err := s.node.WaitApplied(ctx, out.Index); err != nil {
			return nil, err
		}
	}
	if out.ErrorCode != "" || out.ErrorMessage != "" {
		return nil, cluster.ErrorFromCode(out.ErrorCode, out.ErrorMessage)
	}
	if out.Value != nil {
		return out.Value, nil
	}
	return nil, nil
}

// callLeader calls a cluster operation on the leader's API.
func (s *Server) callLeader(ctx context.Context, op string, in, out any) error {
	id := s.node.LeaderID()
	if id == "" {
		return fmt.Errorf("%w: no leader known", cluster.ErrNotLeader)
	}
	m, ok := s.node.Member(id)
	if !ok || m.APIURL == "" {
		return fmt.Errorf("%w: leader %s has no API address yet", cluster.ErrNotLeader, id)
	}
	if id == s.node.ID() {
		return fmt.Errorf("%w: leadership moving", cluster.ErrNotLeader)
	}
	admin, err := s.adminKey(ctx)
	if err != nil {
		return err
	}
	return CallCluster(ctx, m.APIURL, s.cfg.Region, admin, op, in, out)
}

// adminKey returns the account root's access key, unsealed by the HSM.
func (s *Server) adminKey(ctx context.Context) (AccessKey, error) {
	id, ok := s.node.Meta(metaAdminKey)
	if !ok {
		return AccessKey{}, errors.New("agent: no admin access key in state")
	}
	sec, ok := s.creds.lookup(string(id))
	if !ok {
		return AccessKey{}, errors.New("agent: cannot unseal the admin access key")
	}
	return AccessKey{ID: string(id), Secret: string(sec)}, nil
}

var clusterHTTP = &http.Client{Timeout: 30 * time.Second}

// CallCluster calls cluster operation op (Join, Status, Remove, Apply) on
// the kmsd API at url, signed with key. An AWS-shaped error answer becomes
// an *APIError (cluster error codes become cluster sentinels).
func CallCluster(ctx context.Context, url, region string, key AccessKey, op string, in, out any) error {
	body, err := json.Marshal(in)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, "POST", strings.TrimRight(url, "/")+"/", bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/x-amz-json-1.1")
	req.Header.Set("X-Amz-Target", clusterPrefix+op)
	h := sha256.Sum256(body)
	creds := aws.Credentials{AccessKeyID: key.ID, SecretAccessKey: key.Secret}
	if err := v4.NewSigner().SignHTTP(ctx, creds, req, hex.EncodeToString(h[:]), "kms", region, time.Now()); err != nil {
		return err
	}
	resp, err := clusterHTTP.Do(req)
	if err != nil {
		return fmt.Errorf("%w: %s: %v", cluster.ErrNotLeader, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode != 200 {
		var e struct {
			Type    string `json:"__type"`
			Message string `json:"message"`
		}
		json.Unmarshal(b, &e)
		if e.Type == errNotLeaderType {
			return fmt.Errorf("%w: %s", cluster.ErrNotLeader, e.Message)
		}
		return &APIError{Type: e.Type, Message: e.Message, Status: resp.StatusCode}
	}
	if out == nil {
		return nil
	}
	return json.Unmarshal(b, out)
}

// errNotLeaderType is sent by a node asked to act as leader when it is not
// (only on cluster operations); the caller looks for the leader again.
const errNotLeaderType = "KmsdNotLeaderException"

// notLeader turns ErrNotLeader into the cluster operations' own error type.
func notLeader(err error) error {
	if errors.Is(err, cluster.ErrNotLeader) {
		return &APIError{Type: errNotLeaderType, Message: err.Error(), Status: 503}
	}
	return err
}

func requireRoot(s *Server, r *request) error {
	if r.principal != "arn:"+s.partition+":iam::"+s.cfg.AccountID+":root" {
		return apiErr(errAccessDenied, "Only the account root may call cluster operations.")
	}
	return nil
}

func opClusterApply(s *Server, r *request) (any, error) {
	if err := requireRoot(s, r); err != nil {
		return nil, err
	}
	var in clusterApplyRequest
	if err := decode(r, &in); err != nil {
		return nil, err
	}
	v, idx, err := s.node.ApplyEncoded(r.ctx, in.Command)
	if errors.Is(err, cluster.ErrNotLeader) || errors.Is(err, cluster.ErrClosed) {
		return nil, notLeader(fmt.Errorf("%w: %v", cluster.ErrNotLeader, err)) // the caller looks for the leader again
	}
	out := &clusterApplyResponse{Index: idx}
	if err != nil {
		out.ErrorCode, out.ErrorMessage = cluster.ErrorCode(err), err.Error()
		return out, nil
	}
	if b, ok := v.([]byte); ok {
		out.Value = b
	}
	return out, nil
}

// JoinRequest asks the cluster to add a node. A node with an HSM token of
// its own sends TransportKey (the public half of an RSA key pair made in
// its HSM, DER) and receives the domain key wrapped for it.
type JoinRequest struct {
	NodeID       string `json:"NodeId"`
	RaftAddr     string `json:"RaftAddr"`
	APIURL       string `json:"ApiUrl"`
	TransportKey []byte `json:"TransportKey,omitempty"`
}

// JoinResponse carries the domain key wrapped for the joiner's transport
// key, when it sent one.
type JoinResponse struct {
	WrappedDomainKey []byte `json:"WrappedDomainKey,omitempty"`
}

func opClusterJoin(s *Server, r *request) (any, error) {
	if err := requireRoot(s, r); err != nil {
		return nil, err
	}
	var in JoinRequest
	if err := decode(r, &in); err != nil {
		return nil, err
	}
	if in.NodeID == "" || in.RaftAddr == "" || in.APIURL == "" {
		return nil, apiErr(errValidation, "NodeId, RaftAddr and ApiUrl are required.")
	}
	out := &JoinResponse{}
	if len(in.TransportKey) > 0 {
		// Every member holds the domain key: wrap it here, in this HSM.
		w, err := s.pool.ExportDomainKey(r.ctx, in.TransportKey)
		if errors.Is(err, hsmpool.ErrNotExportable) {
			return nil, apiErr(errUnsupported, "This cluster's domain key was made before domain-key transfer existed and cannot leave its HSM; start the node on the same HSM token instead.")
		}
		if err != nil {
			return nil, apiErr(errValidation, "TransportKey: %v", err)
		}
		out.WrappedDomainKey = w
		in.TransportKey = nil
	}
	if !s.node.IsLeader() {
		if err := s.callLeader(r.ctx, "Join", in, nil); err != nil {
			return nil, notLeader(err)
		}
		return out, nil
	}
	if err := s.node.AddVoter(r.ctx, in.NodeID, in.RaftAddr); err != nil {
		return nil, notLeader(err)
	}
	if _, err := s.apply(r.ctx, &cluster.PutMember{Member: cluster.Member{ID: in.NodeID, RaftAddr: in.RaftAddr, APIURL: in.APIURL}}); err != nil {
		return nil, err
	}
	s.log.Info("node joined", "node", in.NodeID, "raft", in.RaftAddr, "api", in.APIURL)
	return out, nil
}

// StatusResponse describes the cluster as one node sees it.
type StatusResponse struct {
	NodeID       string         `json:"NodeId"`
	Leader       string         `json:"Leader"`
	AppliedIndex uint64         `json:"AppliedIndex"`
	Members      []MemberStatus `json:"Members"`
}

// MemberStatus is one member's entry in StatusResponse.
type MemberStatus struct {
	NodeID   string `json:"NodeId"`
	RaftAddr string `json:"RaftAddr"`
	APIURL   string `json:"ApiUrl,omitempty"`
	Voter    bool   `json:"Voter"`
	Leader   bool   `json:"Leader"`
	Ready    bool   `json:"Ready"`
	Health   string `json:"Health"`
}

func opClusterStatus(s *Server, r *request) (any, error) {
	if err := requireRoot(s, r); err != nil {
		return nil, err
	}
	servers, err := s.node.Servers()
	if err != nil {
		return nil, err
	}
	out := &StatusResponse{NodeID: s.node.ID(), Leader: s.node.LeaderID(), AppliedIndex: s.node.AppliedIndex(), Members: []MemberStatus{}}
	for _, sv := range servers {
		ms := MemberStatus{NodeID: sv.ID, RaftAddr: sv.Addr, Voter: sv.Voter, Leader: sv.Leader}
		if m, ok := s.node.Member(sv.ID); ok {
			ms.APIURL = m.APIURL
		}
		ms.Ready, ms.Health = probeReady(r.ctx, ms.APIURL)
		out.Members = append(out.Members, ms)
	}
	return out, nil
}

func probeReady(ctx context.Context, url string) (bool, string) {
	if url == "" {
		return false, "no API address"
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", strings.TrimRight(url, "/")+"/readyz", nil)
	resp, err := clusterHTTP.Do(req)
	if err != nil {
		return false, "unreachable"
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	return resp.StatusCode == 200, strings.TrimSpace(string(b))
}

type clusterRemoveRequest struct {
	NodeID string `json:"NodeId"`
}

func opClusterRemove(s *Server, r *request) (any, error) {
	if err := requireRoot(s, r); err != nil {
		return nil, err
	}
	var in clusterRemoveRequest
	if err := decode(r, &in); err != nil {
		return nil, err
	}
	if in.NodeID == "" {
		return nil, validationRequired("nodeId")
	}
	if !s.node.IsLeader() {
		if err := s.callLeader(r.ctx, "Remove", in, nil); err != nil {
			return nil, notLeader(err)
		}
		return struct{}{}, nil
	}
	if err := s.node.RemoveServer(r.ctx, in.NodeID); err != nil {
		return nil, notLeader(err)
	}
	if _, err := s.apply(r.ctx, &cluster.RemoveMember{ID: in.NodeID}); err != nil {
		return nil, err
	}
	return struct{}{}, nil
}

// SnapshotData carries a state snapshot (SaveSnapshot's encoding).
type SnapshotData struct {
	Snapshot []byte `json:"Snapshot"`
}

func init() {
	clusterOps["SnapshotSave"] = opSnapshotSave
	clusterOps["SnapshotRestore"] = opSnapshotRestore
}

// Join adds the node behind node and pool to a cluster through the member
// API at url, signed with key (the account root). If pool's token has no
// domain key yet, it is transferred HSM to HSM: a transport key pair is
// made in pool's token, the member wraps the domain key for it, and pool
// unwraps it. Call it before Init, on a node with no raft state.
func Join(ctx context.Context, url, region string, key AccessKey, node *cluster.Node, pool *hsmpool.Pool, apiURL string) error {
	req := JoinRequest{NodeID: node.ID(), RaftAddr: node.RaftAddr(), APIURL: apiURL}
	has, err := pool.HasDomainKey(ctx)
	if err != nil {
		return err
	}
	label := ""
	if !has {
		if req.TransportKey, label, err = pool.GenerateTransportKey(ctx); err != nil {
			return err
		}
	}
	var out JoinResponse
	if err := CallCluster(ctx, url, region, key, "Join", req, &out); err != nil {
		return err
	}
	if !has {
		if len(out.WrappedDomainKey) == 0 {
			return errors.New("agent: the cluster sent no domain key")
		}
		if err := pool.ImportDomainKey(ctx, out.WrappedDomainKey, label); err != nil {
			return fmt.Errorf("agent: import the cluster's domain key: %w", err)
		}
	}
	return nil
}

func opSnapshotSave(s *Server, r *request) (any, error) {
	if err := requireRoot(s, r); err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	if err := s.node.SaveSnapshot(&buf); err != nil {
		return nil, err
	}
	return &SnapshotData{Snapshot: buf.Bytes()}, nil
}

func opSnapshotRestore(s *Server, r *request) (any, error) {
	if err := requireRoot(s, r); err != nil {
		return nil, err
	}
	var in SnapshotData
	if err := decode(r, &in); err != nil {
		return nil, err
	}
	if len(in.Snapshot) == 0 {
		return nil, validationRequired("snapshot")
	}
	if !s.node.IsLeader() {
		if err := s.callLeader(r.ctx, "SnapshotRestore", in, nil); err != nil {
			return nil, notLeader(err)
		}
		return struct{}{}, nil
	}
	if err := s.node.RestoreSnapshot(r.ctx, in.Snapshot); err != nil {
		if errors.Is(err, cluster.ErrBadCommand) {
			return nil, apiErr(errValidation, "The snapshot is not a kmsd state snapshot: %v", err)
		}
		return nil, notLeader(err)
	}
	s.log.Warn("state restored from a snapshot", "bytes", len(in.Snapshot))
	return struct{}{}, nil
}
