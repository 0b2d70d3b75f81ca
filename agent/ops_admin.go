package agent

import (
	"errors"
	"strings"

	"github.com/kmsd/kmsd/cluster"
)

// Admin operations on principals and access keys (KmsdCluster.* targets,
// account root only): what `kmsd credentials create|list|delete` calls.

// CreateCredentialRequest makes an access key for a principal. Principal
// is an IAM ARN of this account (arn:aws:iam::ACCOUNT:user/NAME, :role/NAME
// or :root) or the short form "user/NAME" / "role/NAME". Policy, when set,
// becomes the principal's identity policy (IAM policy JSON); ViaService
// sets the kms:ViaService the principal's calls carry.
type CreateCredentialRequest struct {
	Principal  string  `json:"Principal"`
	Policy     *string `json:"Policy,omitempty"`
	ViaService *string `json:"ViaService,omitempty"`
}

// CreateCredentialResponse carries the new secret: it is shown once.
type CreateCredentialResponse struct {
	AccessKeyID     string `json:"AccessKeyId"`
	SecretAccessKey string `json:"SecretAccessKey"`
	Principal       string `json:"Principal"`
}

// CredentialInfo describes an access key (never its secret).
type CredentialInfo struct {
	AccessKeyID string `json:"AccessKeyId"`
	Principal   string `json:"Principal"`
	Created     epoch  `json:"Created"`
	Policy      string `json:"Policy,omitempty"`
	ViaService  string `json:"ViaService,omitempty"`
}

// ListCredentialsResponse lists every access key of the account.
type ListCredentialsResponse struct {
	Credentials []CredentialInfo `json:"Credentials"`
}

// DeleteCredentialRequest removes an access key.
type DeleteCredentialRequest struct {
	AccessKeyID string `json:"AccessKeyId"`
}

func init() {
	clusterOps["CreateCredential"] = opCreateCredential
	clusterOps["ListCredentials"] = opListCredentials
	clusterOps["DeleteCredential"] = opDeleteCredential
}

// principalArn turns "user/alice", "role/r" or a full IAM ARN of this
// account into the ARN, or fails with ValidationException.
func (s *Server) principalArn(p string) (string, error) {
	prefix := "arn:" + s.partition + ":iam::" + s.cfg.AccountID + ":"
	if strings.HasPrefix(p, "user/") || strings.HasPrefix(p, "role/") {
		p = prefix + p
	}
	rest, ok := strings.CutPrefix(p, prefix)
	if !ok {
		return "", apiErr(errValidation, "Principal %q must be an IAM ARN of account %s (%suser/NAME, role/NAME or root).", p, s.cfg.AccountID, prefix)
	}
	if rest == "root" {
		return p, nil
	}
	kind, name, ok := strings.Cut(rest, "/")
	if !ok || (kind != "user" && kind != "role") || name == "" || len(p) > 256 || !principalPattern.MatchString(p) {
		return "", apiErr(errValidation, "Principal %q must be %suser/NAME, %srole/NAME or %sroot.", p, prefix, prefix, prefix)
	}
	return p, nil
}

func opCreateCredential(s *Server, r *request) (any, error) {
	if err := requireRoot(s, r); err != nil {
		return nil, err
	}
	var in CreateCredentialRequest
	if err := decode(r, &in); err != nil {
		return nil, err
	}
	arn, err := s.principalArn(in.Principal)
	if err != nil {
		return nil, err
	}
	if in.Policy != nil || in.ViaService != nil {
		if arn == s.rootArn() {
			return nil, apiErr(errValidation, "The account root has every permission; it takes no identity policy.")
		}
		p := cluster.Principal{Arn: arn, Created: s.cfg.Now().UnixNano()}
		if old, ok := s.node.Principal(arn); ok {
			p = *old
		}
		if in.Policy != nil {
			if len(*in.Policy) > 0 {
				if _, err := compileIdentityPolicy(*in.Policy); err != nil {
					return nil, policyAPIError(err)
				}
			}
			p.Policy = *in.Policy
		}
		if in.ViaService != nil {
			p.ViaService = *in.ViaService
		}
		if _, err := s.apply(r.ctx, &cluster.PutPrincipal{Principal: p}); err != nil {
			return nil, err
		}
	}
	k, err := s.CreateAccessKey(r.ctx, arn)
	if err != nil {
		return nil, err
	}
	return &CreateCredentialResponse{AccessKeyID: k.ID, SecretAccessKey: k.Secret, Principal: arn}, nil
}

func opListCredentials(s *Server, r *request) (any, error) {
	if err := requireRoot(s, r); err != nil {
		return nil, err
	}
	out := &ListCredentialsResponse{Credentials: []CredentialInfo{}}
	for _, c := range s.node.Credentials() {
		ci := CredentialInfo{AccessKeyID: c.AccessKeyID, Principal: c.Principal, Created: epoch(c.Created)}
		if p, ok := s.node.Principal(c.Principal); ok {
			ci.Policy, ci.ViaService = p.Policy, p.ViaService
		}
		out.Credentials = append(out.Credentials, ci)
	}
	return out, nil
}

func opDeleteCredential(s *Server, r *request) (any, error) {
	if err := requireRoot(s, r); err != nil {
		return nil, err
	}
	var in DeleteCredentialRequest
	if err := decode(r, &in); err != nil {
		return nil, err
	}
	c, ok := s.node.Credential(in.AccessKeyID)
	if !ok {
		return nil, apiErr(errNotFound, "Access key %s does not exist.", in.AccessKeyID)
	}
	if c.Principal == s.rootArn() {
		roots := 0
		for _, o := range s.node.Credentials() {
			if o.Principal == c.Principal {
				roots++
			}
		}
		if roots < 2 {
			return nil, apiErr(errValidation, "Access key %s is the account root's last one; create another root key first.", in.AccessKeyID)
		}
	}
	if _, err := s.apply(r.ctx, &cluster.DeleteCredential{AccessKeyID: in.AccessKeyID}); err != nil {
		if errors.Is(err, cluster.ErrCredNotFound) {
			return nil, apiErr(errNotFound, "Access key %s does not exist.", in.AccessKeyID)
		}
		return nil, err
	}
	s.creds.forget(in.AccessKeyID)
	return struct{}{}, nil
}
