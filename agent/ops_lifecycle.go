package agent

import (
	"context"
	"errors"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/kmsd/kmsd/cluster"
)

const day = 24 * time.Hour

// managedKey resolves the key of a management operation (key id or key
// ARN only, as AWS), authorizes the caller for op and checks the key-state
// table for op.
func (s *Server) managedKey(r *request, op string, id *string) (*cluster.Key, error) {
	if id == nil {
		return nil, validationRequired("keyId")
	}
	k, err := s.resolveKey(*id, false)
	if err != nil {
		return nil, err
	}
	if err := s.authorize(r, authReq{action: op, key: k}); err != nil {
		return nil, err
	}
	if err := s.checkKeyState(op, k); err != nil {
		return nil, err
	}
	return k, nil
}

// applyKeyChange proposes c and turns the FSM's refusal (a race with
// another change) into the key-state table's error for op.
func (s *Server) applyKeyChange(r *request, k *cluster.Key, c cluster.Command) error {
	_, err := s.apply(r.ctx, c)
	switch {
	case errors.Is(err, cluster.ErrInvalidState):
		if cur, ok := s.node.Key(k.ID); ok {
			if serr := s.checkKeyState(r.op, cur); serr != nil {
				return serr
			}
		}
		return apiErr(errInvalidState, "%s changed state while the request ran; retry.", k.Arn)
	case errors.Is(err, cluster.ErrKeyNotFound):
		return apiErr(errNotFound, "Key '%s' does not exist", k.Arn)
	}
	return err
}

func opEnableKey(s *Server, r *request) (any, error)  { return s.setEnabled(r, true) }
func opDisableKey(s *Server, r *request) (any, error) { return s.setEnabled(r, false) }

func (s *Server) setEnabled(r *request, enabled bool) (any, error) {
	var in keyIDRequest
	if err := decode(r, &in); err != nil {
		return nil, err
	}
	k, err := s.managedKey(r, r.op, in.KeyId)
	if err != nil {
		return nil, err
	}
	if k.State == cluster.StateUnavailable { // [12]: succeeds, state changes when available
		return struct{}{}, nil
	}
	if err := s.applyKeyChange(r, k, &cluster.SetKeyEnabled{KeyID: k.ID, Enabled: enabled}); err != nil {
		return nil, err
	}
	return struct{}{}, nil
}

func opScheduleKeyDeletion(s *Server, r *request) (any, error) {
	var in scheduleKeyDeletionRequest
	if err := decode(r, &in); err != nil {
		return nil, err
	}
	days := int64(30)
	if in.PendingWindowInDays != nil {
		days = *in.PendingWindowInDays
		if days < 7 || days > 30 {
			return nil, validationRange("pendingWindowInDays", days, 7, 30)
		}
	}
	k, err := s.managedKey(r, r.op, in.KeyId)
	if err != nil {
		return nil, err
	}
	now := s.cfg.Now()
	when := now.Add(time.Duration(days) * day).UnixNano()
	if k.MR != nil { // a primary with replicas waits for them (multiregion.go)
		return s.scheduleMRDeletion(r, k, now.UnixNano(), int32(days))
	}
	if err := s.applyKeyChange(r, k, &cluster.ScheduleDeletion{KeyID: k.ID, DeletionDate: when, PendingDays: int32(days)}); err != nil {
		return nil, err
	}
	d := epoch(when)
	return &scheduleKeyDeletionResponse{KeyId: k.Arn, DeletionDate: &d, KeyState: cluster.StatePendingDeletion, PendingWindowInDays: int32(days)}, nil
}

func opCancelKeyDeletion(s *Server, r *request) (any, error) {
	var in keyIDRequest
	if err := decode(r, &in); err != nil {
		return nil, err
	}
	k, err := s.managedKey(r, r.op, in.KeyId)
	if err != nil {
		return nil, err
	}
	if err := s.applyKeyChange(r, k, &cluster.CancelDeletion{KeyID: k.ID}); err != nil {
		return nil, err
	}
	return &keyIDResponse{KeyId: k.Arn}, nil
}

func opUpdateKeyDescription(s *Server, r *request) (any, error) {
	var in updateKeyDescriptionRequest
	if err := decode(r, &in); err != nil {
		return nil, err
	}
	if in.Description == nil {
		return nil, validationRequired("description")
	}
	if utf8.RuneCountInString(*in.Description) > maxDescription {
		return nil, validationLength("description", 0, maxDescription)
	}
	k, err := s.managedKey(r, r.op, in.KeyId)
	if err != nil {
		return nil, err
	}
	if err := s.applyKeyChange(r, k, &cluster.UpdateDescription{KeyID: k.ID, Description: *in.Description}); err != nil {
		return nil, err
	}
	return struct{}{}, nil
}

func opTagResource(s *Server, r *request) (any, error) {
	var in tagResourceRequest
	if err := decode(r, &in); err != nil {
		return nil, err
	}
	if in.Tags == nil {
		return nil, validationRequired("tags")
	}
	tags, err := checkTags(in.Tags)
	if err != nil {
		return nil, err
	}
	k, err := s.managedKey(r, r.op, in.KeyId)
	if err != nil {
		return nil, err
	}
	err = s.applyKeyChange(r, k, &cluster.TagKey{KeyID: k.ID, Tags: tags})
	if errors.Is(err, cluster.ErrLimitExceeded) {
		return nil, apiErr(errLimitExceeded, "A KMS key can have at most %d tags.", cluster.MaxTagsPerKey)
	}
	if err != nil {
		return nil, err
	}
	return struct{}{}, nil
}

func opUntagResource(s *Server, r *request) (any, error) {
	var in untagResourceRequest
	if err := decode(r, &in); err != nil {
		return nil, err
	}
	if in.TagKeys == nil {
		return nil, validationRequired("tagKeys")
	}
	for _, tk := range in.TagKeys {
		if n := utf8.RuneCountInString(tk); n < 1 || n > 128 {
			return nil, validationLength("tagKeys.member", 1, 128)
		}
		if strings.HasPrefix(strings.ToLower(tk), "aws:") {
			return nil, apiErr(errTag, "Tags beginning with aws: are reserved")
		}
	}
	k, err := s.managedKey(r, r.op, in.KeyId)
	if err != nil {
		return nil, err
	}
	if err := s.applyKeyChange(r, k, &cluster.UntagKey{KeyID: k.ID, Keys: in.TagKeys}); err != nil {
		return nil, err
	}
	return struct{}{}, nil
}

func opListResourceTags(s *Server, r *request) (any, error) {
	var in listResourceTagsRequest
	if err := decode(r, &in); err != nil {
		return nil, err
	}
	limit, err := pageLimit(in.Limit)
	if err != nil {
		return nil, err
	}
	k, err := s.managedKey(r, r.op, in.KeyId)
	if err != nil {
		return nil, err
	}
	start := 0
	if in.Marker != nil {
		start = -1
		for i, t := range k.Tags {
			if t.Key == *in.Marker {
				start = i + 1
			}
		}
		if start < 0 {
			return nil, apiErr(errInvalidMarker, "The marker %q is not one this service returned.", *in.Marker)
		}
	}
	out := &listResourceTagsResponse{Tags: []tagWire{}}
	i := start
	for ; i < len(k.Tags) && len(out.Tags) < limit; i++ {
		out.Tags = append(out.Tags, tagWire{TagKey: k.Tags[i].Key, TagValue: k.Tags[i].Value})
	}
	if i < len(k.Tags) {
		out.Truncated, out.NextMarker = true, k.Tags[i-1].Key
	}
	return out, nil
}

// ---- the leader's timers ----

// Tick runs the leader's due work once: it deletes keys whose waiting
// period is over and rotates keys whose automatic rotation is due. On a
// follower it does nothing. Proposals are idempotent in the FSM (DeleteKey
// needs the key still due; RotateKey needs the expected due date), so a
// change of leader never deletes or rotates twice.
func (s *Server) Tick(ctx context.Context) error {
	s.splitQuotas()
	if !s.node.IsLeader() {
		return nil
	}
	now := s.cfg.Now().UnixNano()
	var errs []error
	for _, k := range s.node.Keys() {
		if err := s.importTick(ctx, k, now); err != nil {
			errs = append(errs, err)
		}
		switch {
		case k.State == cluster.StatePendingDeletion && k.DeletionDate <= now:
			_, err := s.apply(ctx, &cluster.DeleteKey{KeyID: k.ID, Now: now})
			if err == nil {
				s.forgetKey(k)
				s.replicaDeleted(ctx, k)
				s.log.Info("deleted key at the end of its waiting period", "key", k.Arn)
				s.auditServiceEvent("DeleteKey", k)
			} else if !errors.Is(err, cluster.ErrKeyNotFound) && !errors.Is(err, cluster.ErrInvalidState) {
				errs = append(errs, err)
			}
		case k.State == cluster.StateEnabled && k.RotationEnabled && k.NextRotation != 0 && k.NextRotation <= now && !k.IsReplica():
			wrapped, err := s.pool.GenerateWrappedKey(ctx)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			next := now + int64(k.RotationDays)*int64(day)
			_, err = s.apply(ctx, &cluster.RotateKey{KeyID: k.ID, ExpectNext: k.NextRotation, NextRotation: next,
				Material: cluster.Material{Wrapped: wrapped, Created: now, RotationType: cluster.RotationAutomatic}})
			if err == nil {
				s.log.Info("rotated key material", "key", k.Arn, "type", cluster.RotationAutomatic)
				s.auditServiceEvent("RotateKey", k)
			} else if !errors.Is(err, cluster.ErrInvalidState) && !errors.Is(err, cluster.ErrKeyNotFound) {
				errs = append(errs, err)
			}
		}
	}
	errs = append(errs, s.tickMultiRegion(ctx)...)
	return errors.Join(errs...)
}

// splitQuotas gives this node its share of the account's request rates:
// 1/N of each with N voting members in the cluster, re-split as
// membership changes (every node enforces its share locally).
func (s *Server) splitQuotas() {
	if s.quota == nil {
		return
	}
	servers, err := s.node.Servers()
	if err != nil {
		return
	}
	voters := 0
	for _, sv := range servers {
		if sv.Voter {
			voters++
		}
	}
	if voters > 0 {
		s.quota.SetShare(1 / float64(voters))
	}
}

// RunTimers calls Tick every interval until ctx ends.
func (s *Server) RunTimers(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			tctx, cancel := context.WithTimeout(ctx, s.cfg.RequestTimeout)
			if err := s.Tick(tctx); err != nil {
				s.log.Warn("timer tick", "err", err)
			}
			cancel()
		}
	}
}
