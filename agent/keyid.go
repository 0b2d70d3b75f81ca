package agent

import (
	"strings"

	"github.com/kmsd/kmsd/cluster"
)

const aliasPrefix = "alias/"

func (s *Server) keyArn(id string) string {
	return "arn:" + s.partition + ":kms:" + s.cfg.Region + ":" + s.cfg.AccountID + ":key/" + id
}

func (s *Server) aliasArn(name string) string {
	return "arn:" + s.partition + ":kms:" + s.cfg.Region + ":" + s.cfg.AccountID + ":" + name
}

// parseArn splits "arn:PARTITION:kms:REGION:ACCOUNT:RESOURCE" and reports
// whether it names this node's partition, region and account.
func (s *Server) parseArn(arn string) (resource string, ours, ok bool) {
	parts := strings.SplitN(arn, ":", 6)
	if len(parts) != 6 || parts[0] != "arn" || parts[2] != "kms" || parts[5] == "" {
		return "", false, false
	}
	ours = parts[1] == s.partition && parts[3] == s.cfg.Region && parts[4] == s.cfg.AccountID
	return parts[5], ours, true
}

// keyFor resolves id like resolveKey and remembers on r the alias it
// named (for kms:RequestAlias).
func (s *Server) keyFor(r *request, id string, allowAlias bool) (*cluster.Key, error) {
	k, err := s.resolveKey(id, allowAlias)
	if err == nil && allowAlias {
		if name, ok := strings.CutPrefix(id, "arn:"); ok {
			if i := strings.Index(name, ":"+aliasPrefix); i >= 0 {
				r.alias = name[i+1:]
			}
		} else if strings.HasPrefix(id, aliasPrefix) {
			r.alias = id
		}
	}
	return k, err
}

// resolveKey finds the key named by id: a key id, key ARN, alias name or
// alias ARN (the last two only when allowAlias). The error is AWS's
// NotFoundException in every case AWS gives it.
func (s *Server) resolveKey(id string, allowAlias bool) (*cluster.Key, error) {
	if id == "" {
		return nil, validationRequired("keyId")
	}
	if len(id) > 2048 {
		return nil, validationLength("keyId", 1, 2048)
	}
	keyID := id
	switch {
	case strings.HasPrefix(id, "arn:"):
		res, ours, ok := s.parseArn(id)
		if !ok {
			return nil, apiErr(errNotFound, "Invalid arn %s", id)
		}
		if strings.HasPrefix(res, aliasPrefix) && allowAlias {
			if !ours {
				return nil, apiErr(errNotFound, "Alias %s is not found.", id)
			}
			return s.resolveAlias(res)
		}
		kid, isKey := strings.CutPrefix(res, "key/")
		if !isKey || kid == "" {
			return nil, apiErr(errNotFound, "Invalid arn %s", id)
		}
		if !ours {
			return nil, apiErr(errNotFound, "Key '%s' does not exist", id)
		}
		keyID = kid
	case strings.HasPrefix(id, aliasPrefix):
		if !allowAlias {
			return nil, apiErr(errNotFound, "Invalid keyId '%s'", id)
		}
		return s.resolveAlias(id)
	}
	k, ok := s.node.Key(keyID)
	if !ok {
		if !looksLikeKeyID(keyID) {
			return nil, apiErr(errNotFound, "Invalid keyId '%s'", id)
		}
		return nil, apiErr(errNotFound, "Key '%s' does not exist", s.keyArn(keyID))
	}
	return k, nil
}

func (s *Server) resolveAlias(name string) (*cluster.Key, error) {
	a, ok := s.node.Alias(name)
	if !ok {
		return nil, apiErr(errNotFound, "Alias %s is not found.", s.aliasArn(name))
	}
	k, ok := s.node.Key(a.TargetKeyID)
	if !ok {
		return nil, apiErr(errNotFound, "Alias %s is not found.", s.aliasArn(name))
	}
	return k, nil
}

// looksLikeKeyID reports whether id has the shape of a key id: a UUID or
// "mrk-" and 32 hex digits.
func looksLikeKeyID(id string) bool {
	if rest, ok := strings.CutPrefix(id, "mrk-"); ok {
		return len(rest) == 32 && isHex(rest)
	}
	if len(id) != 36 {
		return false
	}
	for i := 0; i < 36; i++ {
		c := id[i]
		if i == 8 || i == 13 || i == 18 || i == 23 {
			if c != '-' {
				return false
			}
		} else if !isHexByte(c) {
			return false
		}
	}
	return true
}

func isHex(s string) bool {
	for i := 0; i < len(s); i++ {
		if !isHexByte(s[i]) {
			return false
		}
	}
	return true
}

func isHexByte(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}
