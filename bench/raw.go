package bench

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"time"

	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/smithy-go"
	"github.com/valyala/fasthttp"
)

// rawEndpoint is one endpoint's address and its pre-signed requests as
// the bytes that go on the wire: one per op, one per Decrypt pool blob.
type rawEndpoint struct {
	addr    string
	tls     *tls.Config // https endpoints
	byOp    [len(ops)][]byte
	decrypt [][]byte
}

// rawConn is one worker's keep-alive connection to one endpoint. A worker
// has one request in flight at a time, so a connection of its own needs no
// pool, no lock and no copy of the request: a request is one write of its
// wire bytes, its answer is parsed by fasthttp from a buffered reader.
type rawConn struct {
	c        net.Conn
	br       *bufio.Reader
	resp     fasthttp.Response
	deadline time.Time // the connection's read/write deadline
}

// rawMaxBody bounds an answer's body (KMS answers are far smaller).
const rawMaxBody = 1 << 20

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
	sign := func(ep, target string, body []byte) ([]byte, error) {
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
		var req fasthttp.Request
		req.Header.SetMethod("POST")
		req.SetRequestURI(ep + "/")
		req.Header.SetHost(hr.Host)
		for k, vs := range hr.Header {
			req.Header.Set(k, vs[0])
		}
		req.SetBody(body)
		var wire bytes.Buffer
		if _, err := req.WriteTo(&wire); err != nil {
			return nil, err
		}
		return wire.Bytes(), nil
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
		re := &rawEndpoint{addr: u.Host}
		switch u.Scheme {
		case "http":
			if u.Port() == "" {
				re.addr = net.JoinHostPort(u.Hostname(), "80")
			}
		case "https":
			re.tls = &tls.Config{ServerName: u.Hostname()}
			if u.Port() == "" {
				re.addr = net.JoinHostPort(u.Hostname(), "443")
			}
		default:
			return nil, fmt.Errorf("bench: Config.Raw: endpoint %s: only http and https", ep)
		}
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

// callRaw replays a pre-signed request on the worker's connection to its
// endpoint and checks the answer's status and shape (a 200 with a JSON
// body; an error's __type otherwise). A transport error closes the
// connection; the next request dials again.
func (w *worker) callRaw(op int) error {
	re := w.r.raw[w.ep]
	var req []byte
	if ops[op] == OpDecrypt {
		if len(re.decrypt) == 0 {
			return ErrInvalidResponse
		}
		req = re.decrypt[w.rng.IntN(len(re.decrypt))]
	} else {
		req = re.byOp[op]
	}
	if w.conns == nil {
		w.conns = make([]*rawConn, len(w.r.raw))
	}
	c := w.conns[w.ep]
	if c == nil {
		var err error
		if c, err = dialRaw(re); err != nil {
			return err
		}
		w.conns[w.ep] = c
	}
	if err := c.roundTrip(req, w.r.cfg.Timeout); err != nil {
		c.close()
		w.conns[w.ep] = nil
		return err
	}
	resp := &c.resp
	if resp.ConnectionClose() {
		c.close()
		w.conns[w.ep] = nil
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

func dialRaw(re *rawEndpoint) (*rawConn, error) {
	d := &net.Dialer{Timeout: 5 * time.Second}
	var c net.Conn
	var err error
	if re.tls != nil {
		c, err = (&tls.Dialer{NetDialer: d, Config: re.tls}).Dial("tcp", re.addr)
	} else {
		c, err = d.Dial("tcp", re.addr)
	}
	if err != nil {
		return nil, err
	}
	return &rawConn{c: c, br: bufio.NewReaderSize(c, 4096)}, nil
}

// roundTrip writes req and reads the answer into c.resp. The deadline is
// moved forward only once a quarter of timeout has passed (a deadline
// change is a runtime timer update), so a request has between 3/4 of
// timeout and all of it.
func (c *rawConn) roundTrip(req []byte, timeout time.Duration) error {
	if now := time.Now(); c.deadline.Sub(now) < timeout-timeout/4 {
		c.deadline = now.Add(timeout)
		if err := c.c.SetDeadline(c.deadline); err != nil {
			return err
		}
	}
	if _, err := c.c.Write(req); err != nil {
		return err
	}
	c.resp.Reset()
	return c.resp.ReadLimitBody(c.br, rawMaxBody)
}

func (c *rawConn) close() { c.c.Close() }

// closeRaw closes the worker's raw connections (end of the run).
func (w *worker) closeRaw() {
	for i, c := range w.conns {
		if c != nil {
			c.close()
			w.conns[i] = nil
		}
	}
}
