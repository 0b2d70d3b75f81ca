package agent

import (
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/kmsd/kmsd/cluster"
)

const (
	minRotationDays     = 90
	maxRotationDays     = 2560
	defaultRotationDays = 365
)

// rotatableKey resolves a key for a rotation operation: [7] for keys whose
// material kmsd cannot rotate (imported, custom key store, not symmetric).
func (s *Server) rotatableKey(r *request, op string, id *string) (*cluster.Key, error) {
	k, err := s.managedKey(r, op, id)
	if err != nil {
		return nil, err
	}
	if k.Origin != originAWSKMS && !(k.Origin == cluster.OriginExternal && (op == "RotateKeyOnDemand" || op == "ListKeyRotations") &&
		k.KeySpec == specSymmetricDefault) {
		// Imported material rotates on demand only, by importing new
		// material first (symmetric keys; a multi-Region key on its
		// primary, once each Region has the new material; see README).
		return nil, stateError(r7, k)
	}
	if k.IsReplica() && op != "ListKeyRotations" {
		return nil, apiErr(errUnsupported, "%s is a multi-Region replica key; rotation is set and done on its primary key (%s).", k.Arn, k.MR.Primary.Arn)
	}
	if k.KeySpec != specSymmetricDefault {
		return nil, apiErr(errUnsupported, "%s is not a symmetric encryption key; its key material cannot be rotated.", k.Arn)
	}
	return k, nil
}

func opEnableKeyRotation(s *Server, r *request) (any, error) {
	var in enableKeyRotationRequest
	if err := decode(r, &in); err != nil {
		return nil, err
	}
	days := int64(defaultRotationDays)
	if in.RotationPeriodInDays != nil {
		days = *in.RotationPeriodInDays
		if days < minRotationDays || days > maxRotationDays {
			return nil, validationRange("rotationPeriodInDays", days, minRotationDays, maxRotationDays)
		}
	}
	k, err := s.rotatableKey(r, r.op, in.KeyId)
	if err != nil {
		return nil, err
	}
	next := s.cfg.Now().Add(time.Duration(days) * day).UnixNano()
	if err := s.applyKeyChange(r, k, &cluster.SetRotation{KeyID: k.ID, Enabled: true, Days: int32(days), NextRotation: next}); err != nil {
		return nil, err
	}
	return struct{}{}, nil
}

func opDisableKeyRotation(s *Server, r *request) (any, error) {
	var in keyIDRequest
	if err := decode(r, &in); err != nil {
		return nil, err
	}
	k, err := s.rotatableKey(r, r.op, in.KeyId)
	if err != nil {
		return nil, err
	}
	if err := s.applyKeyChange(r, k, &cluster.SetRotation{KeyID: k.ID, Enabled: false, Days: k.RotationDays}); err != nil {
		return nil, err
	}
	return struct{}{}, nil
}

func opGetKeyRotationStatus(s *Server, r *request) (any, error) {
	var in keyIDRequest
	if err := decode(r, &in); err != nil {
		return nil, err
	}
	if in.KeyId == nil {
		return nil, validationRequired("keyId")
	}
	k, err := s.resolveKey(*in.KeyId, false)
	if err != nil {
		return nil, err
	}
	if err := s.authorize(r, authReq{action: r.op, key: k}); err != nil {
		return nil, err
	}
	if err := s.checkKeyState(r.op, k); err != nil {
		return nil, err
	}
	if k.Origin != originAWSKMS {
		return nil, stateError(r7, k)
	}
	out := &getKeyRotationStatusResponse{KeyRotationEnabled: k.RotationEnabled, KeyId: k.Arn}
	if k.RotationEnabled {
		d, n := k.RotationDays, epoch(k.NextRotation)
		out.RotationPeriodInDays, out.NextRotationDate = &d, &n
	}
	return out, nil
}

func opRotateKeyOnDemand(s *Server, r *request) (any, error) {
	var in keyIDRequest
	if err := decode(r, &in); err != nil {
		return nil, err
	}
	k, err := s.rotatableKey(r, r.op, in.KeyId)
	if err != nil {
		return nil, err
	}
	if k.OnDemandRotations >= cluster.MaxOnDemandRotations {
		return nil, apiErr(errLimitExceeded, "%s has reached the limit of %d on-demand rotations.", k.Arn, cluster.MaxOnDemandRotations)
	}
	var c cluster.Command
	if k.Origin == cluster.OriginExternal {
		if k.Import == nil || k.Import.Pending == nil {
			return nil, apiErr(errUnsupported, "%s has imported key material: import the new key material (ImportKeyMaterial with ImportType NEW_KEY_MATERIAL) before RotateKeyOnDemand.", k.Arn)
		}
		if missing := s.pendingInReplicas(r.ctx, k); len(missing) > 0 {
			return nil, apiErr(errUnsupported, "The new key material of multi-Region key %s is PENDING_MULTI_REGION_IMPORT_AND_ROTATION: import the same key material (ImportType NEW_KEY_MATERIAL) into its replica keys in %s before RotateKeyOnDemand.", k.Arn, strings.Join(missing, ", "))
		}
		c = &cluster.RotateImported{KeyID: k.ID, Now: s.cfg.Now().UnixNano()}
	} else {
		wrapped, err := s.pool.GenerateWrappedKey(r.ctx)
		if err != nil {
			return nil, err
		}
		c = &cluster.RotateKey{KeyID: k.ID,
			Material: cluster.Material{Wrapped: wrapped, Created: s.cfg.Now().UnixNano(), RotationType: cluster.RotationOnDemand}}
	}
	err = s.applyKeyChange(r, k, c)
	if errors.Is(err, cluster.ErrLimitExceeded) {
		return nil, apiErr(errLimitExceeded, "%s has reached the limit of %d on-demand rotations.", k.Arn, cluster.MaxOnDemandRotations)
	}
	if err != nil {
		return nil, err
	}
	return &keyIDResponse{KeyId: k.Arn}, nil
}

func opListKeyRotations(s *Server, r *request) (any, error) {
	var in listKeyRotationsRequest
	if err := decode(r, &in); err != nil {
		return nil, err
	}
	limit, err := pageLimit(in.Limit)
	if err != nil {
		return nil, err
	}
	all := false
	if in.IncludeKeyMaterial != nil {
		switch *in.IncludeKeyMaterial {
		case "ALL_KEY_MATERIAL":
			all = true
		case "ROTATIONS_ONLY":
		default:
			return nil, validationEnum("includeKeyMaterial", *in.IncludeKeyMaterial, "ALL_KEY_MATERIAL, ROTATIONS_ONLY")
		}
	}
	k, err := s.rotatableKey(r, r.op, in.KeyId)
	if err != nil {
		return nil, err
	}
	entries := rotationEntries(k)
	if n := len(entries); n > 0 && entries[n-1].KeyMaterialState == "PENDING_ROTATION" && len(s.pendingInReplicas(r.ctx, k)) > 0 {
		entries[n-1].KeyMaterialState = "PENDING_MULTI_REGION_IMPORT_AND_ROTATION"
	}
	start := 0
	if in.Marker != nil {
		n, err := strconv.Atoi(*in.Marker)
		if err != nil || n < 0 || n > len(entries) {
			return nil, apiErr(errInvalidMarker, "The marker %q is not one this service returned.", *in.Marker)
		}
		start = n
	}
	out := &listKeyRotationsResponse{Rotations: []rotationEntry{}}
	i := start
	for ; i < len(entries) && len(out.Rotations) < limit; i++ {
		e := entries[i]
		if e.RotationType == "" && !all {
			continue
		}
		out.Rotations = append(out.Rotations, e)
	}
	if i < len(entries) {
		out.Truncated, out.NextMarker = true, strconv.Itoa(i)
	}
	return out, nil
}

// rotationEntries lists k's material versions, oldest first, as
// ListKeyRotations reports them; a key with imported material reports each
// version's import state (also of versions whose material is deleted) and
// last its pending material (PENDING_ROTATION, which ListKeyRotations shows
// only with ALL_KEY_MATERIAL, like the first material: no RotationType).
func rotationEntries(k *cluster.Key) []rotationEntry {
	var out []rotationEntry
	if k.Origin != cluster.OriginExternal {
		for i, m := range k.Materials {
			e := rotationEntry{KeyId: k.ID, KeyMaterialId: materialID(m), KeyMaterialState: "NON_CURRENT", RotationType: m.RotationType}
			if i == len(k.Materials)-1 {
				e.KeyMaterialState = "CURRENT"
			}
			if m.RotationType != "" {
				d := epoch(m.Created)
				e.RotationDate = &d
			}
			out = append(out, e)
		}
		return out
	}
	vs := k.ImportVersions()
	for i, v := range vs {
		e := rotationEntry{KeyId: k.ID, KeyMaterialId: v.MaterialID, KeyMaterialState: "NON_CURRENT", RotationType: v.RotationType,
			ImportState: "PENDING_IMPORT", KeyMaterialDescription: v.Description}
		if i == len(vs)-1 {
			e.KeyMaterialState = "CURRENT"
		}
		if v.RotationType != "" {
			d := epoch(v.Created)
			e.RotationDate = &d
		}
		if v.Imported {
			e.ImportState, e.ExpirationModel = "IMPORTED", v.ExpirationModel
			if v.ExpirationModel == cluster.ExpirationExpires {
				t := epoch(v.ValidTo)
				e.ValidTo = &t
			}
		}
		out = append(out, e)
	}
	if k.Import != nil && k.Import.Pending != nil {
		p := k.Import.Pending
		e := rotationEntry{KeyId: k.ID, KeyMaterialId: p.MaterialID, KeyMaterialState: "PENDING_ROTATION", ImportState: "IMPORTED",
			ExpirationModel: p.ExpirationModel, KeyMaterialDescription: p.Description}
		if p.ExpirationModel == cluster.ExpirationExpires {
			t := epoch(p.ValidTo)
			e.ValidTo = &t
		}
		out = append(out, e)
	}
	return out
}
