#!/usr/bin/env bash
# End-to-end test of bin/kmsd with the stock AWS CLI: only --endpoint-url
# and the credentials file change. Prints "N passed, M failed" last.
set -uo pipefail
cd "$(dirname "$0")/.."

BIN=${BIN:-bin/kmsd}
work=$(mktemp -d)
pid=""
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

export AWS_SHARED_CREDENTIALS_FILE=$work/data/credentials AWS_CONFIG_FILE=/dev/null
export AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1 AWS_PAGER="" AWS_EC2_METADATA_DISABLED=true
unset AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_SESSION_TOKEN AWS_PROFILE SOFTHSM2_CONF

pass=0 fail=0
ok()  { pass=$((pass+1)); echo "ok   - $1"; }
bad() { fail=$((fail+1)); echo "FAIL - $1"; [ -n "${2:-}" ] && sed 's/^/       /' <<<"$2"; }

start() {
  "$BIN" serve --listen 127.0.0.1:0 --data-dir "$work/data" --log-level warn >"$work/out" 2>"$work/err" &
  pid=$!
  for _ in $(seq 1 300); do
    url=$(sed -n 's/^kmsd: serving the AWS KMS API on \([^ ]*\).*/\1/p' "$work/out")
    [ -n "$url" ] && break
    kill -0 "$pid" 2>/dev/null || { echo "kmsd exited:"; cat "$work/err"; exit 1; }
    sleep 0.1
  done
  [ -n "$url" ] || { echo "kmsd did not start"; cat "$work/err"; exit 1; }
}
stop() { kill "$pid"; wait "$pid" 2>/dev/null; pid=""; }
kms() { aws kms "$@" --endpoint-url "$url" --output json; }
field() { python3 -c "import json,sys; print(json.load(sys.stdin)$1)"; }

start
curl -fsS "$url/healthz" >/dev/null 2>&1 && ok "healthz" || bad "healthz"
curl -fsS "$url/readyz" >/dev/null 2>&1 && ok "readyz" || bad "readyz"

if out=$(kms create-key --description e2e 2>&1); then
  key=$(field "['KeyMetadata']['KeyId']" <<<"$out"); ok "create-key $key"
else bad "create-key" "$out"; exit 1; fi

out=$(kms create-alias --alias-name alias/e2e --target-key-id "$key" 2>&1) && ok "create-alias" || bad "create-alias" "$out"
out=$(kms describe-key --key-id alias/e2e 2>&1) && [ "$(field "['KeyMetadata']['KeyId']" <<<"$out")" = "$key" ] \
  && ok "describe-key by alias" || bad "describe-key by alias" "$out"
out=$(kms list-keys 2>&1) && grep -q "$key" <<<"$out" && ok "list-keys" || bad "list-keys" "$out"

printf 'hello, kmsd' >"$work/pt"
if out=$(kms encrypt --key-id alias/e2e --plaintext "fileb://$work/pt" --encryption-context app=e2e 2>&1); then
  field "['CiphertextBlob']" <<<"$out" | base64 -d >"$work/ct"; ok "encrypt"
else bad "encrypt" "$out"; fi
out=$(kms decrypt --ciphertext-blob "fileb://$work/ct" --encryption-context app=e2e 2>&1) \
  && [ "$(field "['Plaintext']" <<<"$out" | base64 -d)" = "hello, kmsd" ] && ok "decrypt" || bad "decrypt" "$out"
out=$(kms decrypt --ciphertext-blob "fileb://$work/ct" --encryption-context app=other 2>&1) \
  && bad "decrypt with wrong context succeeded" || { grep -q InvalidCiphertextException <<<"$out" && ok "wrong context -> InvalidCiphertextException" || bad "wrong context" "$out"; }

python3 - "$work/ct" "$work/ct.bad" <<'PY'
import sys; b=bytearray(open(sys.argv[1],'rb').read()); b[-1]^=1; open(sys.argv[2],'wb').write(b)
PY
out=$(kms decrypt --ciphertext-blob "fileb://$work/ct.bad" --encryption-context app=e2e 2>&1) \
  && bad "tampered blob decrypted" || { grep -q InvalidCiphertextException <<<"$out" && ok "tampered -> InvalidCiphertextException" || bad "tampered" "$out"; }

if out=$(kms generate-data-key --key-id alias/e2e --key-spec AES_256 2>&1); then
  field "['CiphertextBlob']" <<<"$out" | base64 -d >"$work/dk.ct"
  field "['Plaintext']" <<<"$out" >"$work/dk.pt"
  [ "$(base64 -d <"$work/dk.pt" | wc -c)" = 32 ] && ok "generate-data-key" || bad "generate-data-key size"
else bad "generate-data-key" "$out"; fi
out=$(kms decrypt --ciphertext-blob "fileb://$work/dk.ct" 2>&1) \
  && [ "$(field "['Plaintext']" <<<"$out")" = "$(cat "$work/dk.pt")" ] && ok "decrypt data key" || bad "decrypt data key" "$out"
out=$(kms generate-data-key-without-plaintext --key-id "$key" --number-of-bytes 64 2>&1) \
  && ! grep -q '"Plaintext"' <<<"$out" && ok "generate-data-key-without-plaintext" || bad "generate-data-key-without-plaintext" "$out"
out=$(kms generate-random --number-of-bytes 48 2>&1) \
  && [ "$(field "['Plaintext']" <<<"$out" | base64 -d | wc -c)" = 48 ] && ok "generate-random" || bad "generate-random" "$out"
out=$(kms generate-data-key --key-id "$key" --number-of-bytes 2000 2>&1) \
  && bad "2000-byte data key accepted" || { grep -q ValidationException <<<"$out" && ok "too large -> ValidationException" || bad "too large" "$out"; }
out=$(kms encrypt --key-id alias/missing --plaintext "fileb://$work/pt" 2>&1) \
  && bad "missing alias accepted" || { grep -q NotFoundException <<<"$out" && ok "missing alias -> NotFoundException" || bad "missing alias" "$out"; }
out=$(AWS_ACCESS_KEY_ID=AKIAEXAMPLEEXAMPLE00 AWS_SECRET_ACCESS_KEY=nope aws kms list-keys --endpoint-url "$url" 2>&1) \
  && bad "unknown access key accepted" || { grep -q UnrecognizedClientException <<<"$out" && ok "unknown access key -> UnrecognizedClientException" || bad "unknown access key" "$out"; }

stop
start
out=$(kms decrypt --ciphertext-blob "fileb://$work/ct" --encryption-context app=e2e 2>&1) \
  && [ "$(field "['Plaintext']" <<<"$out" | base64 -d)" = "hello, kmsd" ] && ok "decrypt after restart" || bad "decrypt after restart" "$out"
out=$(kms describe-key --key-id alias/e2e 2>&1) && ok "alias after restart" || bad "alias after restart" "$out"
stop

echo "e2e-cli: $pass passed, $fail failed"
[ "$fail" = 0 ]
