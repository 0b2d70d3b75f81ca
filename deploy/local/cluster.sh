#!/usr/bin/env bash
# Local multi-process kmsd cluster on 127.0.0.1.
#   deploy/local/cluster.sh up DIR N    start N nodes (API 4601..460N, raft 4701..470N)
#   deploy/local/cluster.sh down DIR    stop them
# Each node has its own SoftHSM2 token under its data dir, as separate
# machines would: a joining node receives the domain key HSM to HSM (wrapped
# for a transport key made in its token). SHARED_HSM=1 puts every node on
# one token in DIR/hsm instead (nodes sharing an HSM need no transfer).
# Writes DIR/nodes ("NODE_ID PID API_URL" per line)
# and DIR/credentials (the account root, valid on every node), and returns
# once every node answers /readyz.
set -euo pipefail
here=$(cd "$(dirname "$0")/../.." && pwd)
BIN=${BIN:-$here/bin/kmsd}
API_BASE=${API_BASE:-4600}
RAFT_BASE=${RAFT_BASE:-4700}

die() { echo "cluster.sh: $*" >&2; exit 1; }

softhsm_lib() {
  for p in /usr/lib/softhsm/libsofthsm2.so /usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so \
           /usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so /usr/local/lib/softhsm/libsofthsm2.so; do
    [ -e "$p" ] && { echo "$p"; return; }
  done
  die "SoftHSM2 is not installed (make deps)"
}

wait_ready() { # url pid
  for _ in $(seq 1 600); do
    curl -fsS "$1/readyz" >/dev/null 2>&1 && return 0
    kill -0 "$2" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}

up() {
  local dir=$1 n=$2
  [ -x "$BIN" ] || die "$BIN not built (make build)"
  [ "$n" -ge 1 ] && [ "$n" -le 9 ] || die "N must be 1..9"
  mkdir -p "$dir" && dir=$(cd "$dir" && pwd)
  [ -s "$dir/nodes" ] && die "$dir/nodes exists: run down first"
  local hsm=()
  if [ "${SHARED_HSM:-0}" = 1 ]; then
  local lib; lib=$(softhsm_lib)
  export SOFTHSM2_CONF=$dir/hsm/softhsm2.conf
  hsm=(--pkcs11-lib "$lib" --pkcs11-token-label kmsd --pkcs11-pin-file "$dir/hsm/pin")
  if [ ! -f "$dir/hsm/pin" ]; then
    mkdir -p "$dir/hsm/tokens" && chmod 700 "$dir/hsm"
    printf 'directories.tokendir = %s/hsm/tokens\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n' "$dir" >"$SOFTHSM2_CONF"
    (umask 077; head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$dir/hsm/pin")
    softhsm2-util --init-token --free --label kmsd --so-pin "$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')" \
      --pin "$(cat "$dir/hsm/pin")" >/dev/null
  fi
  fi
  : >"$dir/nodes"
  for i in $(seq 1 "$n"); do
    local api=http://127.0.0.1:$((API_BASE + i)) args=()
    if [ "$i" = 1 ]; then args=(--bootstrap); else args=(--join http://127.0.0.1:$((API_BASE + 1)) --join-credentials "$dir/credentials"); fi
    "$BIN" serve --node-id "node$i" --listen "127.0.0.1:$((API_BASE + i))" --data-dir "$dir/node$i" \
      --cluster-addr "127.0.0.1:$((RAFT_BASE + i))" "${hsm[@]}" \
      --log-level warn "${args[@]}" >"$dir/node$i.log" 2>&1 &
    local pid=$!
    echo "node$i $pid $api" >>"$dir/nodes"
    wait_ready "$api" "$pid" || { cat "$dir/node$i.log" >&2; die "node$i did not become ready"; }
    [ "$i" = 1 ] && cp "$dir/node1/credentials" "$dir/credentials"
  done
  # Ready also means every node holds the final membership: a node that
  # lags behind a join would reject votes from members it does not know.
  while read -r id pid api; do
    local seen=0
    for _ in $(seq 1 300); do
      seen=$("$BIN" cluster status --endpoint "$api" --credentials "$dir/credentials" 2>/dev/null | grep -c '^node[0-9]' || true)
      [ "$seen" = "$n" ] && break
      sleep 0.1
    done
    [ "$seen" = "$n" ] || die "$id sees $seen of $n members"
  done <"$dir/nodes"
  echo "cluster.sh: $n nodes ready; credentials: $dir/credentials" >&2
  cat "$dir/nodes"
}

down() {
  local dir=$1
  [ -f "$dir/nodes" ] || return 0
  while read -r id pid url; do
    kill "$pid" 2>/dev/null || true
  done <"$dir/nodes"
  while read -r id pid url; do
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  done <"$dir/nodes"
  rm -f "$dir/nodes"
}

case "${1:-}" in
  up)   [ $# -eq 3 ] || die "usage: cluster.sh up DIR N"; up "$2" "$3" ;;
  down) [ $# -eq 2 ] || die "usage: cluster.sh down DIR"; down "$2" ;;
  *)    die "usage: cluster.sh up DIR N | down DIR" ;;
esac
