package bench

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"time"

	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/smithy-go"
	"github.com/valyala/fasthttp"
)

// rawEndpoint is one endpoint's fasthttp client and its pre-signed
// requests: one per op, one per Decrypt pool blob.
type rawEndpoint struct {
	hc      *fasthttp.HostClient
	byOp    [len(ops)]*fasthttp.Request
	decrypt []*fasthttp.Request
}

// rawError is an AWS error answer read off the wire; it satisfies
// smithy.APIError so classify treats it like the SDK's.
type rawError struct {
	code   string
	status int
}

func (e *rawError) Error() string                 { return fmt.Sprintf("%s (HTTP %d)", e.code, e.status) }
func (e *rawError) ErrorCode() string             { return e.code }
func (e *rawError) ErrorMessage() string          { return e.code }
func (e *rawError) ErrorFault() smithy.ErrorFault { return smithy.FaultUnknown }
func (e *rawError) HTTPStatusCode() int           { return e.status }

// prepareRaw signs every distinct request once per endpoint.
func (r *runner) prepareRaw(ctx context.Context) ([]*rawEndpoint, error) {
	creds, err := r.clients[0].Options().Credentials.Retrieve(ctx)
	if err != nil {
		return nil, fmt.Errorf("bench: Config.Raw: credentials: %w", err)
	}
	signer := v4.NewSigner()
	sign := func(ep, target string, body []byte) (*fasthttp.Request, error) {
		hr, err := http.NewRequest("POST", ep+"/", bytes.NewReader(body))
		if err != nil {
			return nil, err
		}
		hr.Header.Set("Content-Type", "application/x-amz-json-1.1")
		hr.Header.Set("X-Amz-Target", "TrentService."+target)
		h := sha256.Sum256(body)
		if err := signer.SignHTTP(ctx, creds, hr, hex.EncodeToString(h[:]), "kms", r.cfg.Region, time.Now()); err != nil {
			return nil, err
		}
		req := &fasthttp.Request{}
		req.Header.SetMethod("POST")
		req.SetRequestURI(ep + "/")
		req.Header.SetHost(hr.Host)
		for k, vs := range hr.Header {
			req.Header.Set(k, vs[0])
		}
		req.SetBody(body)
		return req, nil
	}
	common := map[string]any{"KeyId": r.cfg.KeyID}
	if len(r.cfg.EncryptionContext) > 0 {
		common["EncryptionContext"] = r.cfg.EncryptionContext
	}
	body := func(extra map[string]any) []byte {
		m := map[string]any{}
		for k, v := range common {
			m[k] = v
		}
		for k, v := range extra {
			m[k] = v
		}
		b, _ := json.Marshal(m)
		return b
	}
	var out []*rawEndpoint
	for _, ep := range r.cfg.Endpoints {
		u, err := url.Parse(ep)
		if err != nil {
			return nil, err
		}
		re := &rawEndpoint{hc: &fasthttp.HostClient{Addr: u.Host, MaxConns: 2 * r.cfg.Concurrency,
			ReadTimeout: r.cfg.Timeout, WriteTimeout: r.cfg.Timeout}}
		for i, op := range ops {
			var b []byte
			switch op {
			case OpGenerateDataKey:
				b = body(map[string]any{"KeySpec": "AES_256"})
			case OpGenerateDataKeyWithoutPlaintext:
				b = body(map[string]any{"KeySpec": "AES_256"})
			case OpEncrypt:
				b = body(map[string]any{"Plaintext": make([]byte, r.cfg.PlaintextSize)})
			default:
				continue
			}
			if re.byOp[i], err = sign(ep, op, b); err != nil {
				return nil, err
			}
		}
		for _, blob := range r.pool {
			req, err := sign(ep, OpDecrypt, body(map[string]any{"CiphertextBlob": blob}))
			if err != nil {
				return nil, err
			}
			re.decrypt = append(re.decrypt, req)
		}
		out = append(out, re)
	}
	return out, nil
}

// callRaw replays a pre-signed request and checks the answer's status and
// shape (a 200 with a JSON body; an error's __type otherwise).
func (w *worker) callRaw(op int) error {
	re := w.r.raw[w.ep]
	var tmpl *fasthttp.Request
	if ops[op] == OpDecrypt {
		if len(re.decrypt) == 0 {
			return ErrInvalidResponse
		}
		tmpl = re.decrypt[w.rng.IntN(len(re.decrypt))]
	} else {
		tmpl = re.byOp[op]
	}
	req := fasthttp.AcquireRequest()
	resp := fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	tmpl.CopyTo(req)
	if err := re.hc.DoTimeout(req, resp, w.r.cfg.Timeout); err != nil {
		return err
	}
	if st := resp.StatusCode(); st != 200 {
		var e struct {
			Type string `json:"__type"`
		}
		json.Unmarshal(resp.Body(), &e)
		return &rawError{code: e.Type, status: st}
	}
	if len(resp.Body()) < 20 {
		return ErrInvalidResponse
	}
	return nil
}
