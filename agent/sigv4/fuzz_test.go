package sigv4

import (
	"bytes"
	"strconv"
	"testing"
)

// FuzzVerify feeds arbitrary Authorization, X-Amz-Date and body values into
// an otherwise valid SDK-signed request. Verify must not panic, and every
// error must wrap exactly one sentinel and never carry the secret.
func FuzzVerify(f *testing.F) {
	base := sdkSign(f, kmsOpts())
	authz := headerValue(base, "Authorization")
	body := kmsOpts().body
	f.Add(authz, testDate, body) // verifies
	f.Add("", testDate, body)
	f.Add("AWS4-HMAC-SHA256", "", []byte(nil))
	f.Add("AWS4-HMAC-SHA256 Credential=/////, SignedHeaders=;;;, Signature=", testDate, body)
	f.Add("AWS4-HMAC-SHA256 Credential=a/b/c/d/aws4_request,SignedHeaders=host,Signature=00", "20260123T141500Z", body)
	f.Add("AWS4-HMAC-SHA256 ,,,=,==,Credential==", "99999999T999999Z", []byte("{"))
	f.Add("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE000000001/20260123/eu-west-1/kms/aws4_request, SignedHeaders=HOST;X-AMZ-DATE, Signature=zz", "20260123T141500Z", []byte{0xff, 0})
	f.Add("Bearer \x00\x7f\xff", "Fri, 23 Jan 2026 14:15:00 GMT", body)
	f.Add(authz, "20260123T141500", body)
	f.Add(authz, "00000000T000000Z", body)
	f.Fuzz(func(t *testing.T, authz, date string, body []byte) {
		// Header values cannot carry CR/LF/NUL on the wire; fasthttp would
		// reject the request before Verify sees it.
		if bytes.ContainsAny([]byte(authz+date), "\r\n\x00") {
			return
		}
		raw := replaceHeader(base, "Authorization", authz)
		raw = replaceHeader(raw, "X-Amz-Date", date)
		head, _, _ := bytes.Cut(raw, []byte("\r\n\r\n"))
		raw = replaceHeader(append(head, "\r\n\r\n"...), "Content-Length", strconv.Itoa(len(body)))
		raw = append(raw, body...)
		req, err := parse(raw)
		if err != nil {
			return
		}
		_, err = newTestVerifier(t, testTime).Verify(req)
		if err != nil {
			checkSentinel(t, err)
		}
	})
}
