#!/usr/bin/env bash
# End-to-end: a 3-process cluster (deploy/local/cluster.sh) driven by the AWS
# CLI: writes on followers, crypto on every node, kill -9 of the leader,
# failover, and nothing acknowledged lost. Prints "N passed, M failed" last.
set -uo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d)
export API_BASE=${API_BASE:-5600} RAFT_BASE=${RAFT_BASE:-5700}
cleanup() { deploy/local/cluster.sh down "$work" >/dev/null 2>&1; rm -rf "$work"; }
trap cleanup EXIT
export AWS_SHARED_CREDENTIALS_FILE=$work/credentials AWS_CONFIG_FILE=/dev/null
export AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1 AWS_PAGER="" AWS_EC2_METADATA_DISABLED=true
unset AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_SESSION_TOKEN AWS_PROFILE SOFTHSM2_CONF
pass=0 fail=0
ok()  { pass=$((pass+1)); echo "ok   - $1"; }
bad() { fail=$((fail+1)); echo "FAIL - $1"; [ -n "${2:-}" ] && sed 's/^/       /' <<<"$2"; }
api() { echo "http://127.0.0.1:$((API_BASE + $1))"; }
kms() { local n=$1; shift; aws kms "$@" --endpoint-url "$(api "$n")" --output json; }
field() { python3 -c "import json,sys; print(json.load(sys.stdin)$1)"; }

out=$(deploy/local/cluster.sh up "$work" 3 2>&1) && ok "cluster.sh up 3" || { bad "cluster.sh up" "$out"; echo "e2e-cluster: $pass passed, $((fail)) failed"; exit 1; }
[ "$(wc -l <"$work/nodes")" = 3 ] && ok "DIR/nodes lists 3 nodes" || bad "DIR/nodes" "$(cat "$work/nodes")"

key=$(kms 2 create-key --description on-follower 2>&1 | field "['KeyMetadata']['KeyId']") && ok "create-key on a follower" || bad "create-key on a follower"
out=$(kms 2 describe-key --key-id "$key" 2>&1) && ok "read-your-writes on that follower" || bad "read-your-writes" "$out"
printf 'cluster secret' >"$work/pt"
kms 3 encrypt --key-id "$key" --plaintext "fileb://$work/pt" 2>/dev/null | field "['CiphertextBlob']" | base64 -d >"$work/ct"
for n in 1 2 3; do
  out=$(kms "$n" decrypt --ciphertext-blob "fileb://$work/ct" 2>&1) && [ "$(field "['Plaintext']" <<<"$out" | base64 -d)" = "cluster secret" ] \
    && ok "decrypt on node$n" || bad "decrypt on node$n" "$out"
done

acked=()
for i in 1 2 3 4 5; do
  kms 3 create-alias --alias-name "alias/pre$i" --target-key-id "$key" >/dev/null 2>&1 && acked+=("alias/pre$i")
done
leader_pid=$(awk '$1=="node1"{print $2}' "$work/nodes")
kill -9 "$leader_pid" && ok "kill -9 the leader (node1)"
errors=0
for i in 1 2 3 4 5 6; do
  n=$((2 + i % 2))
  if kms "$n" create-alias --alias-name "alias/post$i" --target-key-id "$key" >/dev/null 2>&1; then acked+=("alias/post$i"); else errors=$((errors+1)); fi
  kms "$n" decrypt --ciphertext-blob "fileb://$work/ct" >/dev/null 2>&1 || errors=$((errors+1))
done
echo "       failover: $errors calls failed while node1 was down (${#acked[@]} writes acknowledged)"
[ "${#acked[@]}" -ge 6 ] && ok "writes accepted after the leader died" || bad "writes after failover (${#acked[@]} acknowledged)"
for n in 2 3; do
  out=$(kms "$n" list-aliases --key-id "$key" 2>&1)
  missing=0; for a in "${acked[@]}"; do grep -q "\"$a\"" <<<"$out" || missing=$((missing+1)); done
  [ "$missing" = 0 ] && ok "node$n has every acknowledged write" || bad "node$n misses $missing acknowledged writes" "$out"
done
out=$(bin/kmsd cluster status --endpoint "$(api 2)" --credentials "$work/credentials" 2>&1) && grep -q "leader" <<<"$out" \
  && ok "kmsd cluster status" || bad "kmsd cluster status" "$out"
echo "$out" | sed 's/^/       /'
echo "e2e-cluster: $pass passed, $fail failed"
[ "$fail" = 0 ]
