#!/usr/bin/env bash
# Installs what kmsd needs on a Debian machine: SoftHSM2 (always) and, with
# --test, the AWS CLI for the end-to-end script. Root installs through
# apt-get; anyone else gets the exact command to run.
set -euo pipefail

need=()
softhsm_present() {
  for p in /usr/lib/softhsm/libsofthsm2.so /usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so \
           /usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so /usr/local/lib/softhsm/libsofthsm2.so; do
    [ -e "$p" ] && return 0
  done
  return 1
}
softhsm_present || need+=(softhsm2)
if [ "${1:-}" = "--test" ]; then
  command -v aws >/dev/null 2>&1 && aws --version >/dev/null 2>&1 || need+=(awscli)
  command -v curl >/dev/null 2>&1 || need+=(curl ca-certificates)
  command -v npm >/dev/null 2>&1 || need+=(nodejs npm)
fi
install_node_modules() {
  # The AWS Encryption SDK for JavaScript, for the interop test.
  if [ "${1:-}" = "--test" ] && [ ! -d test/interop/js/node_modules/@aws-crypto/client-node ]; then
    (cd test/interop/js && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
  fi
}
cd "$(dirname "$0")/.."
if [ ${#need[@]} -eq 0 ]; then install_node_modules "${1:-}"; exit 0; fi

if [ "$(id -u)" != 0 ]; then
  echo "kmsd needs: ${need[*]}. Install them as root:" >&2
  echo "  sudo apt-get update && sudo apt-get install -y ${need[*]}" >&2
  exit 1
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "kmsd needs: ${need[*]}, and this machine has no apt-get: install them with its package manager." >&2
  exit 1
fi
echo "installing ${need[*]} ..." >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
install_node_modules "${1:-}"
