package agent

import (
	"sync"
	"time"
)

// usageTracker remembers each key's last successful cryptographic
// operation for GetKeyLastUsage. It lives in memory on each node (no raft
// write per request); TrackingStartDate is when this node started
// tracking, so an answer never claims more history than it has.
type usageTracker struct {
	start time.Time
	mu    sync.Mutex
	last  map[string]keyUsage
}

type keyUsage struct {
	op    string
	at    int64
	reqID string
}

func newUsageTracker(now time.Time) *usageTracker {
	return &usageTracker{start: now, last: map[string]keyUsage{}}
}

func (u *usageTracker) record(keyID string, r *request) {
	u.mu.Lock()
	u.last[keyID] = keyUsage{op: r.op, at: r.at.UnixNano(), reqID: r.id}
	u.mu.Unlock()
}

func (u *usageTracker) get(keyID string) (keyUsage, bool) {
	u.mu.Lock()
	defer u.mu.Unlock()
	k, ok := u.last[keyID]
	return k, ok
}

func (u *usageTracker) forget(keyID string) {
	u.mu.Lock()
	delete(u.last, keyID)
	u.mu.Unlock()
}

func opGetKeyLastUsage(s *Server, r *request) (any, error) {
	var in keyIDRequest
	if err := decode(r, &in); err != nil {
		return nil, err
	}
	if in.KeyId == nil {
		return nil, validationRequired("keyId")
	}
	k, err := s.keyFor(r, *in.KeyId, true)
	if err != nil {
		return nil, err
	}
	if err := s.authorize(r, authReq{action: r.op, key: k}); err != nil {
		return nil, err
	}
	out := &getKeyLastUsageResponse{KeyId: k.Arn, TrackingStartDate: epochOf(s.usage.start), KeyCreationDate: epoch(k.Created)}
	if u, ok := s.usage.get(k.ID); ok {
		ts := epoch(u.at)
		out.KeyLastUsage = &keyLastUsageData{Operation: u.op, Timestamp: &ts, KmsRequestId: u.reqID}
	}
	return out, nil
}
