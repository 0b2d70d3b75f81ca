package agent

import (
	"strings"

	"github.com/google/uuid"
	"github.com/valyala/fasthttp"

	"github.com/kmsd/kmsd/agent/audit"
	"github.com/kmsd/kmsd/cluster"
)

// auditCall writes the audit record of one API call (Config.Audit; nothing
// when it is nil). resp is the encoded response of a call that succeeded;
// ae the error of one that failed. Only agent/audit's allowlisted request
// and response members are recorded: never plaintext, ciphertext, data
// keys, signatures, MACs, secrets or grant tokens.
func (s *Server) auditCall(ctx *fasthttp.RequestCtx, r *request, resp []byte, ae *APIError) {
	if s.cfg.Audit == nil {
		return
	}
	op := strings.TrimPrefix(r.op, targetPrefix)
	ev := &audit.Event{
		EventTime:          s.cfg.Now(),
		EventName:          op,
		AWSRegion:          s.cfg.Region,
		SourceIPAddress:    r.remoteIP(),
		UserAgent:          string(ctx.UserAgent()),
		RequestID:          r.id,
		ReadOnly:           audit.ReadOnly(op),
		RecipientAccountID: s.cfg.AccountID,
		UserIdentity:       s.userIdentity(r),
	}
	if _, known := s.ops[op]; known {
		keyARN := ""
		if len(r.resources) > 0 {
			keyARN = r.resources[0]
		}
		ev.SetCall(op, r.body, r.bodyValid, resp, keyARN)
	} else if !strings.HasPrefix(op, clusterPrefix) {
		ev.EventName = "" // not an operation: record the attempt, not the name
	}
	if ae != nil {
		ev.ErrorCode, ev.ErrorMessage = ae.Type, ae.Message
	}
	for _, arn := range r.resources {
		ev.Resources = append(ev.Resources, audit.Resource{AccountID: s.cfg.AccountID, ARN: arn})
	}
	s.cfg.Audit.Log(ev)
}

// userIdentity is CloudTrail's userIdentity for the caller of r.
func (s *Server) userIdentity(r *request) audit.UserIdentity {
	u := audit.UserIdentity{ARN: r.principal, AccessKeyID: r.akid, AccountID: accountOf(r.principal)}
	if r.principal == "" {
		return u
	}
	res := arnResource(r.principal)
	switch {
	case res == "root":
		u.Type, u.PrincipalID = "Root", u.AccountID
	case strings.HasPrefix(res, "user/"):
		u.Type, u.UserName = "IAMUser", strings.TrimPrefix(res, "user/")
		u.PrincipalID = u.UserName
	case strings.HasPrefix(res, "role/"), strings.HasPrefix(res, "assumed-role/"):
		u.Type, u.PrincipalID = "AssumedRole", res
	}
	return u
}

// claimedAccessKey is the access key id a request that failed SigV4 claims
// (Credential=AKID/... in Authorization, or X-Amz-Credential), for the
// audit record; "" if none. It is not a secret.
func claimedAccessKey(ctx *fasthttp.RequestCtx) string {
	v := string(ctx.Request.Header.Peek("Authorization"))
	if _, rest, ok := strings.Cut(v, "Credential="); ok {
		v = rest
	} else {
		v = string(ctx.QueryArgs().Peek("X-Amz-Credential"))
	}
	id, _, _ := strings.Cut(v, "/")
	if len(id) > 128 || strings.ContainsAny(id, " ,") {
		return ""
	}
	return id
}

// auditServiceEvent records an action kmsd took on its own (the leader's
// timers: DeleteKey at the end of the waiting period, automatic RotateKey,
// DeleteExpiredKeyMaterial) as CloudTrail records AWS KMS's: an
// AwsServiceEvent invoked by kms.amazonaws.com.
func (s *Server) auditServiceEvent(name string, k *cluster.Key) {
	if s.cfg.Audit == nil {
		return
	}
	s.cfg.Audit.Log(&audit.Event{
		EventTime:          s.cfg.Now(),
		EventName:          name,
		AWSRegion:          s.cfg.Region,
		SourceIPAddress:    "kms.amazonaws.com",
		UserAgent:          "kms.amazonaws.com",
		UserIdentity:       audit.UserIdentity{AccountID: s.cfg.AccountID, InvokedBy: "kms.amazonaws.com"},
		RequestID:          uuid.NewString(),
		EventType:          "AwsServiceEvent",
		RecipientAccountID: s.cfg.AccountID,
		Resources:          []audit.Resource{{AccountID: s.cfg.AccountID, ARN: k.Arn}},
	})
}
