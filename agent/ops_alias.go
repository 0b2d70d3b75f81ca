package agent

import (
	"errors"
	"strings"

	"github.com/kmsd/kmsd/cluster"
)

// checkAliasName applies the AWS rules: "alias/" prefix, 1..256 characters
// of [a-zA-Z0-9:/_-], and "alias/aws/" reserved for AWS managed keys.
func checkAliasName(name *string, field string) (string, error) {
	if name == nil {
		return "", validationRequired(field)
	}
	n := *name
	if len(n) < 1 || len(n) > 256 {
		return "", validationLength(field, 1, 256)
	}
	for i := 0; i < len(n); i++ {
		c := n[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == ':' || c == '/' || c == '_' || c == '-') {
			return "", apiErr(errValidation, "1 validation error detected: Value '%s' at '%s' failed to satisfy constraint: Member must satisfy regular expression pattern: ^[a-zA-Z0-9:/_-]+$", n, field)
		}
	}
	if !strings.HasPrefix(n, aliasPrefix) || len(n) == len(aliasPrefix) {
		return "", apiErr(errInvalidAliasName, "Alias must start with the prefix \"alias/\" and have a name after it.")
	}
	if strings.HasPrefix(n, "alias/aws/") {
		return "", apiErr(errInvalidAliasName, "Alias names beginning with alias/aws/ are reserved for AWS managed keys.")
	}
	return n, nil
}

// aliasTarget resolves a TargetKeyId (key id or key ARN only) and
// authorizes the caller for op on the key and on the alias name.
func (s *Server) aliasTarget(r *request, name string, id *string) (*cluster.Key, error) {
	op := r.op
	if id == nil {
		return nil, validationRequired("targetKeyId")
	}
	if strings.HasPrefix(*id, aliasPrefix) || strings.Contains(*id, ":alias/") {
		return nil, apiErr(errValidation, "TargetKeyId must be a key ID or key ARN, not an alias.")
	}
	k, err := s.resolveKey(*id, false)
	if err != nil {
		return nil, err
	}
	if err := s.authorizeAlias(r, name, k); err != nil {
		return nil, err
	}
	if err := s.checkKeyState(op, k); err != nil {
		return nil, err
	}
	return k, nil
}

// authorizeAlias checks an alias operation as AWS does: permission on the
// key (its key policy) and on the alias (identity policy; the account root
// has it).
func (s *Server) authorizeAlias(r *request, name string, k *cluster.Key) error {
	if err := s.authorize(r, authReq{action: r.op, key: k}); err != nil {
		return err
	}
	return s.authorize(r, authReq{action: r.op, resource: s.aliasArn(name)})
}

func opCreateAlias(s *Server, r *request) (any, error) {
	var in createAliasRequest
	if err := decode(r, &in); err != nil {
		return nil, err
	}
	name, err := checkAliasName(in.AliasName, "aliasName")
	if err != nil {
		return nil, err
	}
	k, err := s.aliasTarget(r, name, in.TargetKeyId)
	if err != nil {
		return nil, err
	}
	now := s.cfg.Now().UnixNano()
	_, err = s.apply(r.ctx, &cluster.CreateAlias{Alias: cluster.Alias{Name: name, TargetKeyID: k.ID, Created: now, Updated: now}})
	if err != nil {
		return nil, s.aliasApplyError(err, name, k)
	}
	return struct{}{}, nil
}

// aliasApplyError turns the FSM's refusal of an alias change into AWS's
// error for it.
func (s *Server) aliasApplyError(err error, name string, target *cluster.Key) error {
	switch {
	case errors.Is(err, cluster.ErrAliasExists):
		return apiErr(errAlreadyExists, "An alias with the name %s already exists", s.aliasArn(name))
	case errors.Is(err, cluster.ErrAliasNotFound):
		return apiErr(errNotFound, "Alias %s is not found.", s.aliasArn(name))
	case errors.Is(err, cluster.ErrLimitExceeded):
		return apiErr(errLimitExceeded, "A KMS key can have at most %d aliases.", cluster.MaxAliasesKey)
	case errors.Is(err, cluster.ErrInvalidState) && target != nil:
		return apiErr(errInvalidState, "%s is pending deletion.", target.Arn)
	}
	return err
}

func opUpdateAlias(s *Server, r *request) (any, error) {
	var in createAliasRequest
	if err := decode(r, &in); err != nil {
		return nil, err
	}
	name, err := checkAliasName(in.AliasName, "aliasName")
	if err != nil {
		return nil, err
	}
	cur, ok := s.node.Alias(name)
	if !ok {
		return nil, apiErr(errNotFound, "Alias %s is not found.", s.aliasArn(name))
	}
	if old, ok := s.node.Key(cur.TargetKeyID); ok {
		if err := s.authorize(r, authReq{action: r.op, key: old}); err != nil {
			return nil, err
		}
	}
	k, err := s.aliasTarget(r, name, in.TargetKeyId)
	if err != nil {
		return nil, err
	}
	if old, ok := s.node.Key(cur.TargetKeyID); ok && (old.KeyUsage != k.KeyUsage || keyType(old.KeySpec) != keyType(k.KeySpec)) {
		return nil, apiErr(errValidation, "The new target key must have the same key type and key usage as the current one.")
	}
	_, err = s.apply(r.ctx, &cluster.UpdateAlias{Name: name, TargetKeyID: k.ID, Updated: s.cfg.Now().UnixNano()})
	if err != nil {
		return nil, s.aliasApplyError(err, name, k)
	}
	return struct{}{}, nil
}

func opDeleteAlias(s *Server, r *request) (any, error) {
	var in deleteAliasRequest
	if err := decode(r, &in); err != nil {
		return nil, err
	}
	name, err := checkAliasName(in.AliasName, "aliasName")
	if err != nil {
		return nil, err
	}
	cur, ok := s.node.Alias(name)
	if !ok {
		return nil, apiErr(errNotFound, "Alias %s is not found.", s.aliasArn(name))
	}
	if k, ok := s.node.Key(cur.TargetKeyID); ok {
		if err := s.authorizeAlias(r, name, k); err != nil {
			return nil, err
		}
	}
	if _, err = s.apply(r.ctx, &cluster.DeleteAlias{Name: name}); err != nil {
		return nil, s.aliasApplyError(err, name, nil)
	}
	return struct{}{}, nil
}

func opListAliases(s *Server, r *request) (any, error) {
	var in listAliasesRequest
	if err := decode(r, &in); err != nil {
		return nil, err
	}
	limit, err := pageLimit(in.Limit)
	if err != nil {
		return nil, err
	}
	if err := s.authorize(r, authReq{action: r.op}); err != nil {
		return nil, err
	}
	keyID := ""
	if in.KeyId != nil {
		k, err := s.resolveKey(*in.KeyId, false)
		if err != nil {
			return nil, err
		}
		keyID = k.ID
	}
	after := ""
	if in.Marker != nil {
		after = *in.Marker
		if !strings.HasPrefix(after, aliasPrefix) {
			return nil, apiErr(errInvalidMarker, "The marker %q is not one this service returned.", after)
		}
	}
	as, more := s.node.ListAliases(keyID, after, limit)
	out := &listAliasesResponse{Aliases: make([]aliasListEntry, 0, len(as)), Truncated: more}
	for _, a := range as {
		out.Aliases = append(out.Aliases, aliasListEntry{AliasName: a.Name, AliasArn: s.aliasArn(a.Name),
			TargetKeyId: a.TargetKeyID, CreationDate: epoch(a.Created), LastUpdatedDate: epoch(a.Updated)})
	}
	if more {
		out.NextMarker = as[len(as)-1].Name
	}
	return out, nil
}
