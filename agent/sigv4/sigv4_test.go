package sigv4

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

// TestSDKSigned: requests signed by aws-sdk-go-v2's v4 signer verify.
func TestSDKSigned(t *testing.T) {
	big := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB
	multi := http.Header{}
	multi.Add("X-Multi", "one")
	multi.Add("X-Multi", "  two   three  ")
	multi.Set("X-Spaces", "a    b \t c")
	multi.Set("Content-Type", "application/x-amz-json-1.1")
	cases := []struct {
		name string
		o    signOpts
	}{
		{"kms_encrypt", kmsOpts()},
		{"session_token", func() signOpts { o := kmsOpts(); o.token = "FQoGZXIvYXdzEXAMPLE//+=="; return o }()},
		{"empty_body_get", signOpts{method: http.MethodGet, url: "http://127.0.0.1:8080/"}},
		{"no_path", signOpts{method: http.MethodGet, url: "http://127.0.0.1:8080"}},
		{"path_escapes", signOpts{method: http.MethodGet, url: "http://127.0.0.1:8080/a%20b/%E2%82%AC/c~d!$'()*,;=:@x/%2F/"}},
		{"query", signOpts{method: http.MethodGet, url: "http://127.0.0.1:8080/q?b=2&a=1&a=0&c=%20x%2By&e=a+b&f=%2F%7E&empty=&flag"}},
		{"multi_and_spaces", signOpts{header: multi, body: []byte("{}")}},
		{"big_body", signOpts{method: http.MethodPut, url: "http://127.0.0.1:8080/blob", body: big}},
		{"host_default_port", signOpts{url: "http://kms.eu-west-1.amazonaws.com:80/", body: []byte("{}")}},
		{"content_sha256_header", func() signOpts {
			o := kmsOpts()
			sum := sha256.Sum256(o.body)
			o.header.Set("X-Amz-Content-Sha256", hex.EncodeToString(sum[:]))
			return o
		}()},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			raw := sdkSign(t, tc.o)
			v := newTestVerifier(t, testTime.Add(90*time.Second))
			res, err := v.Verify(mustParse(t, raw))
			if err != nil {
				t.Fatalf("Verify: %v\n%s", err, raw[:min(len(raw), 2000)])
			}
			if res.AccessKeyID != testAKID || !res.Date.Equal(testTime) || res.SessionToken != tc.o.token {
				t.Fatalf("Result = %+v", res)
			}
			// Second call hits the key cache.
			if _, err := v.Verify(mustParse(t, raw)); err != nil {
				t.Fatalf("Verify (cached key): %v", err)
			}
		})
	}
}

// TestPresigned: a URL presigned by the SDK verifies until X-Amz-Expires.
func TestPresigned(t *testing.T) {
	r, _ := http.NewRequest(http.MethodGet, "http://127.0.0.1:8080/p?Action=ListKeys&X-Amz-Expires=300", nil)
	sum := sha256.Sum256(nil)
	creds := awsCreds(testAKID, testSecret, "tok/en+")
	url, _, err := sdkSigner().PresignHTTP(t.Context(), creds, r, hex.EncodeToString(sum[:]), "kms", testRegion, testTime)
	if err != nil {
		t.Fatal(err)
	}
	target := strings.TrimPrefix(url, "http://127.0.0.1:8080")
	raw := []byte("GET " + target + " HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n")

	res, err := newTestVerifier(t, testTime.Add(299*time.Second)).Verify(mustParse(t, raw))
	if err != nil {
		t.Fatalf("Verify: %v\n%s", err, raw)
	}
	if res.SessionToken != "tok/en+" {
		t.Fatalf("SessionToken = %q", res.SessionToken)
	}
	_, err = newTestVerifier(t, testTime.Add(301*time.Second)).Verify(mustParse(t, raw))
	if !errors.Is(err, ErrExpired) {
		t.Fatalf("after expiry: %v, want ErrExpired", err)
	}
	tampered := bytes.Replace(raw, []byte("ListKeys"), []byte("ListKeyz"), 1)
	if _, err = newTestVerifier(t, testTime).Verify(mustParse(t, tampered)); !errors.Is(err, ErrSignatureMismatch) {
		t.Fatalf("tampered: %v, want ErrSignatureMismatch", err)
	}
}

type botoVector struct {
	Name        string     `json:"name"`
	Method      string     `json:"method"`
	Target      string     `json:"target"`
	Headers     [][]string `json:"headers"`
	BodyB64     string     `json:"body_b64"`
	AccessKeyID string     `json:"access_key_id"`
	Secret      string     `json:"secret"`
	Region      string     `json:"region"`
	Service     string     `json:"service"`
	Now         string     `json:"now"`
}

func (bv botoVector) raw(t testing.TB) []byte {
	body, err := base64.StdEncoding.DecodeString(bv.BodyB64)
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	b.WriteString(bv.Method + " " + bv.Target + " HTTP/1.1\r\n")
	hasLen := false
	for _, h := range bv.Headers {
		hasLen = hasLen || strings.EqualFold(h[0], "Content-Length")
		b.WriteString(h[0] + ": " + h[1] + "\r\n")
	}
	if !hasLen {
		b.WriteString("Content-Length: " + itoa(len(body)) + "\r\n")
	}
	b.WriteString("\r\n")
	b.Write(body)
	return b.Bytes()
}

func (bv botoVector) verifier(t testing.TB) *Verifier {
	now, err := time.Parse(amzDateLayout, bv.Now)
	if err != nil {
		t.Fatal(err)
	}
	return &Verifier{
		Region:  bv.Region,
		Service: bv.Service,
		Lookup: func(id string) ([]byte, bool) {
			return []byte(bv.Secret), id == bv.AccessKeyID
		},
		Now: func() time.Time { return now },
	}
}

func loadBotocore(t testing.TB) []botoVector {
	t.Helper()
	data, err := os.ReadFile("testdata/botocore.json")
	if err != nil {
		t.Fatal(err)
	}
	vs, err := decodeBotocore(data)
	if err != nil {
		t.Fatal(err)
	}
	return vs
}

func decodeBotocore(data []byte) ([]botoVector, error) {
	var f struct {
		Vectors []botoVector `json:"vectors"`
	}
	if err := json.Unmarshal(data, &f); err != nil {
		return nil, err
	}
	if len(f.Vectors) == 0 {
		return nil, errors.New("no vectors")
	}
	return f.Vectors, nil
}

// TestBotocoreVectors: requests signed by botocore (the AWS CLI's signer),
// checked in by testdata/gen_botocore.py, verify.
func TestBotocoreVectors(t *testing.T) {
	for _, bv := range loadBotocore(t) {
		t.Run(bv.Name, func(t *testing.T) {
			raw := bv.raw(t)
			if _, err := bv.verifier(t).Verify(mustParse(t, raw)); err != nil {
				t.Fatalf("Verify: %v\n%s", err, raw)
			}
		})
	}
}

// TestSingleByteChanges flips one bit in every byte of the method, request
// target, every signed header line, the Authorization and date values and the
// body of SDK- and botocore-signed requests; none may verify.
func TestSingleByteChanges(t *testing.T) {
	type subject struct {
		name string
		raw  []byte
		v    *Verifier
	}
	q := kmsOpts()
	q.url = "http://127.0.0.1:8080/x/y?a=1&b=two"
	q.token = "session-token"
	subjects := []subject{
		{"sdk_kms", sdkSign(t, kmsOpts()), newTestVerifier(t, testTime)},
		{"sdk_path_query_token", sdkSign(t, q), newTestVerifier(t, testTime)},
	}
	for _, bv := range loadBotocore(t) {
		subjects = append(subjects, subject{"botocore_" + bv.Name, bv.raw(t), bv.verifier(t)})
	}
	for _, s := range subjects {
		t.Run(s.name, func(t *testing.T) {
			if _, err := s.v.Verify(mustParse(t, s.raw)); err != nil {
				t.Fatalf("unmodified request: %v", err)
			}
			signed := signedSet(headerValue(s.raw, "Authorization"))
			checked := 0
			for _, i := range coveredOffsets(s.raw, signed) {
				mut := bytes.Clone(s.raw)
				mut[i] ^= 0x01
				if samePathAfterNormalizing(s.raw, mut) {
					continue // "/a/./b" and "/a//b" sign alike (botocore normalises)
				}
				req, err := parse(mut)
				if err != nil {
					continue // not a request any more
				}
				_, err = s.v.Verify(req)
				if err == nil {
					t.Fatalf("byte %d %q->%q: still verifies\n%s", i, s.raw[i], mut[i], mut)
				}
				checked++
				checkSentinel(t, err)
			}
			if checked < 100 {
				t.Fatalf("only %d mutations checked", checked)
			}
		})
	}
}

func signedSet(authz string) map[string]bool {
	m := map[string]bool{"authorization": true, "x-amz-date": true}
	_, list, _ := strings.Cut(authz, "SignedHeaders=")
	list, _, _ = strings.Cut(list, ",")
	for _, h := range strings.Split(list, ";") {
		m[h] = true
	}
	return m
}

// coveredOffsets lists the byte offsets of raw that the signature covers:
// method and target of the request line, signed header lines, and the body.
func coveredOffsets(raw []byte, signed map[string]bool) []int {
	var out []int
	headEnd := bytes.Index(raw, []byte("\r\n\r\n"))
	lineStart := 0
	for lineNo := 0; lineStart < headEnd; lineNo++ {
		end := lineStart + bytes.Index(raw[lineStart:], []byte("\r\n"))
		line := raw[lineStart:end]
		switch {
		case lineNo == 0: // method SP target SP version; the version is not signed
			for i := lineStart; i < lineStart+bytes.LastIndexByte(line, ' '); i++ {
				out = append(out, i)
			}
		default:
			if k, _, ok := bytes.Cut(line, []byte(":")); ok && signed[strings.ToLower(string(k))] {
				for i := lineStart; i < end; i++ {
					out = append(out, i)
				}
			}
		}
		lineStart = end + 2
	}
	for i := headEnd + 4; i < len(raw); i++ {
		out = append(out, i)
	}
	return out
}

// TestErrors covers every error class with the sentinel and AWS message.
func TestErrors(t *testing.T) {
	good := sdkSign(t, kmsOpts())
	authz := headerValue(good, "Authorization")
	_, sig, _ := strings.Cut(authz, "Signature=")
	cred := "Credential=" + testAKID + "/20260123/" + testRegion + "/kms/aws4_request"
	sh := "SignedHeaders=content-type;host;x-amz-date;x-amz-target"
	withAuth := func(a string) []byte { return replaceHeader(good, "Authorization", a) }

	cases := []struct {
		name string
		raw  []byte
		now  time.Time
		want error
		msg  string // exact Error() text, or a prefix if it ends in "..."
	}{
		{"missing_authorization", replaceHeader(good, "Authorization", "\x00"), testTime, ErrMissingAuth, "Missing Authentication Token"},
		{"empty_authorization", withAuth(""), testTime, ErrMissingAuth, "Missing Authentication Token"},
		{"missing_credential", withAuth("AWS4-HMAC-SHA256 " + sh + ", Signature=" + sig), testTime, ErrIncomplete,
			"Authorization header requires 'Credential' parameter. Authorization=AWS4-HMAC-SHA256 SignedHeaders=..."},
		{"missing_signed_headers", withAuth("AWS4-HMAC-SHA256 " + cred + ", Signature=" + sig), testTime, ErrIncomplete,
			"Authorization header requires 'SignedHeaders' parameter. Authorization=AWS4-HMAC-SHA256 Credential=..."},
		{"missing_signature", withAuth("AWS4-HMAC-SHA256 " + cred + ", " + sh), testTime, ErrIncomplete,
			"Authorization header requires 'Signature' parameter. Authorization=..."},
		{"missing_all", withAuth("AWS4-HMAC-SHA256"), testTime, ErrIncomplete,
			"Authorization header requires 'Credential' parameter. Authorization header requires 'Signature' parameter. Authorization header requires 'SignedHeaders' parameter. Authorization=AWS4-HMAC-SHA256"},
		{"missing_date", replaceHeader(good, "X-Amz-Date", "\x00"), testTime, ErrIncomplete,
			"Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header. Authorization=AWS4-HMAC-SHA256 Credential=..."},
		{"bad_date", replaceHeader(good, "X-Amz-Date", "2026-01-23T14:15:00Z"), testTime, ErrIncomplete,
			"Date must be in ISO-8601 'basic format'. Got '2026-01-23T14:15:00Z'. See http://en.wikipedia.org/wiki/ISO_8601"},
		{"bad_date_month13", replaceHeader(good, "X-Amz-Date", "20261323T141500Z"), testTime, ErrIncomplete, "Date must be in ISO-8601 'basic format'..."},
		{"wrong_algorithm", withAuth(strings.Replace(authz, "SHA256", "SHA512", 1)), testTime, ErrIncomplete, "Unsupported Authorization type 'AWS4-HMAC-SHA512'..."},
		{"bearer", withAuth("Bearer abc"), testTime, ErrIncomplete, "Unsupported Authorization type 'Bearer'..."},
		{"no_equals", withAuth("AWS4-HMAC-SHA256 Credential"), testTime, ErrIncomplete,
			"'Credential' not a valid key=value pair (missing equal-sign) in Authorization header: 'AWS4-HMAC-SHA256 Credential'."},
		{"scope_too_short", withAuth("AWS4-HMAC-SHA256 Credential=" + testAKID + "/20260123/" + testRegion + "/kms, " + sh + ", Signature=" + sig), testTime, ErrIncomplete,
			"Credential should be of the form '<AccessKeyId>/<yyyymmdd>/<region>/<service>/aws4_request'..."},
		{"scope_bad_terminator", withAuth(strings.Replace(authz, "aws4_request", "aws4_requesx", 1)), testTime, ErrIncomplete,
			"Credential should be scoped with a valid terminator: 'aws4_request', not 'aws4_requesx'."},
		{"scope_date_mismatch", withAuth(strings.Replace(authz, "/20260123/", "/20260122/", 1)), testTime, ErrSignatureMismatch,
			"Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: '20260122' != '20260123', from '20260123T141500Z'."},
		{"host_not_signed", withAuth("AWS4-HMAC-SHA256 " + cred + ", SignedHeaders=content-type;x-amz-date, Signature=" + sig), testTime, ErrIncomplete,
			"'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization."},
		{"region_mismatch", sdkSign(t, func() signOpts { o := kmsOpts(); o.region = "us-east-1"; return o }()), testTime, ErrSignatureMismatch,
			"Credential should be scoped to a valid region."},
		{"service_mismatch", sdkSign(t, func() signOpts { o := kmsOpts(); o.service = "sts"; return o }()), testTime, ErrSignatureMismatch,
			"Credential should be scoped to correct service: 'kms'."},
		{"unknown_key", sdkSign(t, func() signOpts { o := kmsOpts(); o.akid = "AKIDNOBODY"; return o }()), testTime, ErrUnknownAccessKey,
			"The security token included in the request is invalid."},
		{"empty_key_id", withAuth(strings.Replace(authz, testAKID, "", 1)), testTime, ErrUnknownAccessKey, "The security token included in the request is invalid."},
		{"wrong_secret", sdkSign(t, func() signOpts { o := kmsOpts(); o.secret = "not-the-secret"; return o }()), testTime, ErrSignatureMismatch, ErrSignatureMismatch.Error()},
		{"bad_signature_hex", withAuth(strings.Replace(authz, sig, strings.ToUpper(sig), 1)), testTime, ErrSignatureMismatch, ErrSignatureMismatch.Error()},
		{"short_signature", withAuth(strings.Replace(authz, sig, sig[:10], 1)), testTime, ErrSignatureMismatch, ErrSignatureMismatch.Error()},
		{"expired", good, testTime.Add(5*time.Minute + time.Second), ErrExpired,
			"Signature expired: 20260123T141500Z is now earlier than 20260123T141501Z (20260123T142001Z - 5 min.)"},
		{"expired_long_ago", good, testTime.Add(24 * time.Hour), ErrExpired, "Signature expired: 20260123T141500Z is now earlier than..."},
		{"not_yet_current", good, testTime.Add(-5*time.Minute - time.Second), ErrExpired,
			"Signature not yet current: 20260123T141500Z is still later than 20260123T141459Z (20260123T140959Z + 5 min.)"},
		{"unsigned_payload", sdkSign(t, func() signOpts { o := kmsOpts(); o.header.Set("X-Amz-Content-Sha256", unsignedPayload); return o }()), testTime,
			ErrSignatureMismatch, ErrSignatureMismatch.Error()},
		{"content_sha256_wrong", sdkSign(t, func() signOpts {
			o := kmsOpts()
			o.header.Set("X-Amz-Content-Sha256", strings.Repeat("0", 64))
			return o
		}()), testTime, ErrSignatureMismatch, ErrSignatureMismatch.Error()},
		{"presign_missing_params", []byte("GET /?X-Amz-Algorithm=AWS4-HMAC-SHA256 HTTP/1.1\r\nHost: h\r\n\r\n"), testTime, ErrIncomplete, "AWS query-string parameters must include..."},
		{"presign_bad_algorithm", []byte("GET /?X-Amz-Algorithm=HMAC HTTP/1.1\r\nHost: h\r\n\r\n"), testTime, ErrIncomplete, "X-Amz-Algorithm only supports \"AWS4-HMAC-SHA256\""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := newTestVerifier(t, tc.now).Verify(mustParse(t, tc.raw))
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			checkSentinel(t, err)
			got := err.Error()
			if p, ok := strings.CutSuffix(tc.msg, "..."); ok {
				if !strings.HasPrefix(got, p) {
					t.Fatalf("message\n got %q\nwant prefix %q", got, p)
				}
			} else if got != tc.msg {
				t.Fatalf("message\n got %q\nwant %q", got, tc.msg)
			}
		})
	}
}

// TestSkewBoundary: exactly MaxSkew either way is accepted, and MaxSkew is
// configurable.
func TestSkewBoundary(t *testing.T) {
	raw := sdkSign(t, kmsOpts())
	for _, d := range []time.Duration{-5 * time.Minute, 5 * time.Minute, 0} {
		if _, err := newTestVerifier(t, testTime.Add(d)).Verify(mustParse(t, raw)); err != nil {
			t.Errorf("now=signing%+v: %v", d, err)
		}
	}
	v := newTestVerifier(t, testTime.Add(90*time.Second))
	v.MaxSkew = time.Minute
	_, err := v.Verify(mustParse(t, raw))
	if !errors.Is(err, ErrExpired) || !strings.HasSuffix(err.Error(), "- 1 min.)") {
		t.Fatalf("MaxSkew=1m: %v", err)
	}
}

// TestSecretRotation: a cached signing key is not used once Lookup returns a
// different secret.
func TestSecretRotation(t *testing.T) {
	secret := []byte(testSecret)
	v := &Verifier{Region: testRegion, Now: func() time.Time { return testTime },
		Lookup: func(string) ([]byte, bool) { return secret, true }}
	raw := sdkSign(t, kmsOpts())
	if _, err := v.Verify(mustParse(t, raw)); err != nil {
		t.Fatal(err)
	}
	secret = []byte("rotated")
	if _, err := v.Verify(mustParse(t, raw)); !errors.Is(err, ErrSignatureMismatch) {
		t.Fatalf("after rotation: %v, want ErrSignatureMismatch", err)
	}
}

// TestKeyCacheBounded: the cache never grows past maxCachedKeys.
func TestKeyCacheBounded(t *testing.T) {
	var c keyCache
	for i := range maxCachedKeys + 50 {
		c.get("AKID"+itoa(i), []byte("20260123/eu-west-1/kms/aws4_request"), []byte("s"), "eu-west-1", "kms")
	}
	if n := len(c.m); n > maxCachedKeys {
		t.Fatalf("cache has %d entries, limit %d", n, maxCachedKeys)
	}
}

// refSign is an independent SigV4 signer (from the published spec) used only
// where no reference signer can produce the request, e.g. the Date fallback.
// TestRefSignMatchesSDK checks it against the SDK first.
func refSign(method, target, host string, hdrs [][2]string, body []byte, amzDate string) string {
	path, query, _ := strings.Cut(target, "?")
	all := append([][2]string{{"host", host}}, hdrs...)
	slices.SortFunc(all, func(a, b [2]string) int { return strings.Compare(strings.ToLower(a[0]), strings.ToLower(b[0])) })
	var names []string
	canon := ""
	for _, h := range all {
		names = append(names, strings.ToLower(h[0]))
		canon += strings.ToLower(h[0]) + ":" + h[1] + "\n"
	}
	sum := sha256.Sum256(body)
	cr := strings.Join([]string{method, path, query, canon, strings.Join(names, ";"), hex.EncodeToString(sum[:])}, "\n")
	crSum := sha256.Sum256([]byte(cr))
	scope := amzDate[:8] + "/" + testRegion + "/kms/aws4_request"
	sts := "AWS4-HMAC-SHA256\n" + amzDate + "\n" + scope + "\n" + hex.EncodeToString(crSum[:])
	mac := func(k []byte, s string) []byte { m := hmac.New(sha256.New, k); m.Write([]byte(s)); return m.Sum(nil) }
	k := mac(mac(mac(mac([]byte("AWS4"+testSecret), amzDate[:8]), testRegion), "kms"), "aws4_request")
	return "AWS4-HMAC-SHA256 Credential=" + testAKID + "/" + scope + ", SignedHeaders=" + strings.Join(names, ";") +
		", Signature=" + hex.EncodeToString(mac(k, sts))
}

func TestRefSignMatchesSDK(t *testing.T) {
	o := signOpts{body: []byte("{}"), header: http.Header{"X-Amz-Target": {"TrentService.ListKeys"}}}
	raw := sdkSign(t, o)
	got := refSign("POST", "/", "127.0.0.1:8080", [][2]string{{"content-length", "2"}, {"x-amz-date", testDate}, {"x-amz-target", "TrentService.ListKeys"}}, o.body, testDate)
	if want := headerValue(raw, "Authorization"); got != want {
		t.Fatalf("refSign = %q\n     SDK = %q", got, want)
	}
}

// TestDateHeaderFallback: without X-Amz-Date, an RFC 1123 Date header dates
// the request.
func TestDateHeaderFallback(t *testing.T) {
	const httpDate = "Fri, 23 Jan 2026 14:15:00 GMT"
	body := []byte("{}")
	authz := refSign("POST", "/", "127.0.0.1:8080", [][2]string{{"date", httpDate}}, body, testDate)
	raw := []byte("POST / HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nDate: " + httpDate + "\r\nAuthorization: " + authz + "\r\nContent-Length: 2\r\n\r\n{}")
	res, err := newTestVerifier(t, testTime).Verify(mustParse(t, raw))
	if err != nil || !res.Date.Equal(testTime) {
		t.Fatalf("Verify = %+v, %v", res, err)
	}
	bad := bytes.Replace(raw, []byte("14:15:00 GMT"), []byte("14:15 GMT"), 1)
	if _, err := newTestVerifier(t, testTime).Verify(mustParse(t, bad)); !errors.Is(err, ErrIncomplete) {
		t.Fatalf("bad Date: %v, want ErrIncomplete", err)
	}
}

// TestHeaderNamesNotNormalized: verification does not depend on fasthttp
// normalising header-name case.
func TestHeaderNamesNotNormalized(t *testing.T) {
	raw := sdkSign(t, kmsOpts())
	r2 := &fasthttp.Request{}
	r2.Header.DisableNormalizing()
	if err := r2.Read(bufioReader(raw)); err != nil {
		t.Fatal(err)
	}
	if _, err := newTestVerifier(t, testTime).Verify(r2); err != nil {
		t.Fatalf("Verify with DisableNormalizing: %v", err)
	}
}

func TestNormalizePath(t *testing.T) {
	for in, want := range map[string]string{
		"/":               "/",
		"/a/./b/../c//d/": "/a/c/d/",
		"/..":             "/",
		"/a/b":            "/a/b",
		"//":              "/",
		"a/../../b":       "b",
	} {
		got, _ := normalizePath([]byte(in))
		if string(got) != want {
			t.Errorf("normalizePath(%q) = %q, want %q", in, got, want)
		}
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

func samePathAfterNormalizing(a, b []byte) bool {
	lineA, restA, okA := bytes.Cut(a, []byte("\r\n"))
	lineB, restB, okB := bytes.Cut(b, []byte("\r\n"))
	fa, fb := strings.Fields(string(lineA)), strings.Fields(string(lineB))
	if !okA || !okB || len(fa) != 3 || len(fb) != 3 || fa[0] != fb[0] || fa[2] != fb[2] || !bytes.Equal(restA, restB) {
		return false
	}
	pa, qa, _ := strings.Cut(fa[1], "?")
	pb, qb, _ := strings.Cut(fb[1], "?")
	na, _ := normalizePath([]byte(pa))
	nb, _ := normalizePath([]byte(pb))
	return qa == qb && pa != pb && bytes.Equal(na, nb)
}
