#!/usr/bin/env bash
# End-to-end test of custom key stores with the stock AWS CLI: bin/kmsd
# xks-proxy (its own SoftHSM2 token) is the external key manager of bin/kmsd
# serve. Prints "N passed, M failed" last.
set -uo pipefail
cd "$(dirname "$0")/.."

BIN=${BIN:-bin/kmsd}
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null && wait "$p" 2>/dev/null; done; rm -rf "$work"; }
trap cleanup EXIT

# AWS CLI v1 fetches parameters that look like URLs unless told not to.
printf '[default]\ncli_follow_urlparam = false\n' >"$work/cli.conf"
export AWS_SHARED_CREDENTIALS_FILE=$work/node/credentials AWS_CONFIG_FILE=$work/cli.conf
export AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1 AWS_PAGER="" AWS_EC2_METADATA_DISABLED=true
unset AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_SESSION_TOKEN AWS_PROFILE SOFTHSM2_CONF

pass=0 fail=0
ok()  { pass=$((pass+1)); echo "ok   - $1"; }
bad() { fail=$((fail+1)); echo "FAIL - $1"; [ -n "${2:-}" ] && sed 's/^/       /' <<<"$2"; }

# wait_line FILE PREFIX PID: the rest of the first line of FILE starting with PREFIX.
wait_line() {
  for _ in $(seq 1 300); do
    v=$(sed -n "s|^$2\([^ ]*\).*|\1|p" "$1" | head -1)
    [ -n "$v" ] && { echo "$v"; return 0; }
    kill -0 "$3" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}

"$BIN" xks-proxy create-key --data-dir "$work/proxy" --label app-key-1 >/dev/null 2>"$work/err" \
  && ok "xks-proxy create-key" || { bad "xks-proxy create-key" "$(cat "$work/err")"; exit 1; }
"$BIN" xks-proxy --data-dir "$work/proxy" --listen 127.0.0.1:0 >"$work/proxy.out" 2>"$work/proxy.err" &
pids+=($!)
proxy=$(wait_line "$work/proxy.out" "kmsd xks-proxy: serving " "${pids[-1]}") || { cat "$work/proxy.err"; exit 1; }
endpoint=${proxy%/kms/xks/v1}
"$BIN" serve --listen 127.0.0.1:0 --data-dir "$work/node" --log-level warn --xks-ca-file "$work/proxy/tls.crt" >"$work/node.out" 2>"$work/node.err" &
pids+=($!)
url=$(wait_line "$work/node.out" "kmsd: serving the AWS KMS API on " "${pids[-1]}") || { cat "$work/node.err"; exit 1; }
kms() { aws kms "$@" --endpoint-url "$url" --output json; }
field() { python3 -c "import json,sys; print(json.load(sys.stdin)$1)"; }
akid=$(awk '/aws_access_key_id/{print $3}' "$work/proxy/xks-credentials")
secret=$(awk '/aws_secret_access_key/{print $3}' "$work/proxy/xks-credentials")

out=$(kms create-custom-key-store --custom-key-store-name hyok --custom-key-store-type EXTERNAL_KEY_STORE \
  --xks-proxy-connectivity PUBLIC_ENDPOINT --xks-proxy-uri-endpoint "$endpoint" --xks-proxy-uri-path /kms/xks/v1 \
  --xks-proxy-authentication-credential "AccessKeyId=$akid,RawSecretAccessKey=$secret" 2>&1) \
  && store=$(field "['CustomKeyStoreId']" <<<"$out") && ok "create-custom-key-store $store" || { bad "create-custom-key-store" "$out"; exit 1; }
out=$(kms create-custom-key-store --custom-key-store-name wrong --custom-key-store-type EXTERNAL_KEY_STORE \
  --xks-proxy-connectivity PUBLIC_ENDPOINT --xks-proxy-uri-endpoint "$endpoint" --xks-proxy-uri-path /other/kms/xks/v1 \
  --xks-proxy-authentication-credential "AccessKeyId=$akid,RawSecretAccessKey=${secret%?}A" 2>&1) \
  && bad "wrong credential accepted" || { grep -q XksProxyIncorrectAuthenticationCredentialException <<<"$out" && ok "wrong credential -> XksProxyIncorrectAuthenticationCredentialException" || bad "wrong credential" "$out"; }
out=$(kms connect-custom-key-store --custom-key-store-id "$store" 2>&1) && ok "connect-custom-key-store" || bad "connect" "$out"
out=$(kms describe-custom-key-stores --custom-key-store-id "$store" 2>&1) \
  && [ "$(field "['CustomKeyStores'][0]['ConnectionState']" <<<"$out")" = CONNECTED ] && ok "describe: CONNECTED" || bad "describe" "$out"
out=$(kms create-key --origin EXTERNAL_KEY_STORE --custom-key-store-id "$store" --xks-key-id app-key-1 2>&1) \
  && key=$(field "['KeyMetadata']['KeyId']" <<<"$out") && ok "create-key in the external key store" || { bad "create-key" "$out"; exit 1; }
out=$(kms create-key --origin EXTERNAL_KEY_STORE --custom-key-store-id "$store" --xks-key-id missing 2>&1) \
  && bad "unknown external key accepted" || { grep -q XksKeyNotFoundException <<<"$out" && ok "unknown external key -> XksKeyNotFoundException" || bad "unknown external key" "$out"; }

printf 'hold your own key' >"$work/pt"
out=$(kms encrypt --key-id "$key" --plaintext "fileb://$work/pt" --encryption-context app=e2e 2>&1) \
  && { field "['CiphertextBlob']" <<<"$out" | base64 -d >"$work/ct"; ok "encrypt"; } || bad "encrypt" "$out"
out=$(kms decrypt --ciphertext-blob "fileb://$work/ct" --encryption-context app=e2e 2>&1) \
  && [ "$(field "['Plaintext']" <<<"$out" | base64 -d)" = "hold your own key" ] && ok "decrypt" || bad "decrypt" "$out"
grep -q '"kmsOperation":"Decrypt"' "$work/proxy.err" && ok "proxy logged the Decrypt (kmsOperation)" || bad "proxy log"
grep -q "hold your own key" "$work/proxy.err" "$work/node.err" && bad "plaintext in a log" || ok "no plaintext in the logs"

out=$(kms disconnect-custom-key-store --custom-key-store-id "$store" 2>&1) && ok "disconnect" || bad "disconnect" "$out"
out=$(kms describe-key --key-id "$key" 2>&1) && [ "$(field "['KeyMetadata']['KeyState']" <<<"$out")" = Unavailable ] \
  && ok "key Unavailable while disconnected" || bad "key state" "$out"
out=$(kms decrypt --ciphertext-blob "fileb://$work/ct" --encryption-context app=e2e 2>&1) \
  && bad "decrypt while disconnected" || { grep -q KMSInvalidStateException <<<"$out" && ok "disconnected -> KMSInvalidStateException" || bad "disconnected" "$out"; }
out=$(kms connect-custom-key-store --custom-key-store-id "$store" 2>&1) && ok "reconnect" || bad "reconnect" "$out"

# The proxy goes down: a clear error; back up: nothing lost.
kill "${pids[0]}"; wait "${pids[0]}" 2>/dev/null
out=$(kms decrypt --ciphertext-blob "fileb://$work/ct" --encryption-context app=e2e 2>&1) \
  && bad "decrypt with the proxy down" || { grep -q "cannot communicate with the external key store proxy" <<<"$out" && ok "proxy down -> KMSInvalidStateException (cannot communicate)" || bad "proxy down" "$out"; }
port=${endpoint##*:}
"$BIN" xks-proxy --data-dir "$work/proxy" --listen "127.0.0.1:$port" >"$work/proxy2.out" 2>>"$work/proxy.err" &
pids[0]=$!
wait_line "$work/proxy2.out" "kmsd xks-proxy: serving " "${pids[0]}" >/dev/null || { cat "$work/proxy.err"; exit 1; }
out=$(kms decrypt --ciphertext-blob "fileb://$work/ct" --encryption-context app=e2e 2>&1) \
  && [ "$(field "['Plaintext']" <<<"$out" | base64 -d)" = "hold your own key" ] && ok "decrypt after the proxy restarted" || bad "decrypt after restart" "$out"

out=$(kms disconnect-custom-key-store --custom-key-store-id "$store" 2>&1)
out=$(kms delete-custom-key-store --custom-key-store-id "$store" 2>&1) \
  && bad "deleted a store holding a key" || { grep -q CustomKeyStoreHasCMKsException <<<"$out" && ok "delete with keys -> CustomKeyStoreHasCMKsException" || bad "delete with keys" "$out"; }

echo "e2e-xks: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
