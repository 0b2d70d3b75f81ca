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

# Key management (issue #3) through the CLI.
kid=$(kms create-key --description lifecycle --tags TagKey=team,TagValue=blue 2>&1 | field "['KeyMetadata']['KeyId']")
out=$(kms update-key-description --key-id "$kid" --description renamed 2>&1) && [ "$(kms describe-key --key-id "$kid" | field "['KeyMetadata']['Description']")" = renamed ] \
  && ok "update-key-description" || bad "update-key-description" "$out"
out=$(kms tag-resource --key-id "$kid" --tags TagKey=env,TagValue=test 2>&1) && kms list-resource-tags --key-id "$kid" | grep -q '"env"' \
  && ok "tag-resource / list-resource-tags" || bad "tag-resource" "$out"
out=$(kms untag-resource --key-id "$kid" --tag-keys env 2>&1) && ! kms list-resource-tags --key-id "$kid" | grep -q '"env"' \
  && ok "untag-resource" || bad "untag-resource" "$out"
out=$(kms disable-key --key-id "$kid" 2>&1) && ok "disable-key" || bad "disable-key" "$out"
out=$(kms encrypt --key-id "$kid" --plaintext "fileb://$work/pt" 2>&1) \
  && bad "encrypt with disabled key" || { grep -q DisabledException <<<"$out" && ok "disabled -> DisabledException" || bad "disabled" "$out"; }
out=$(kms enable-key --key-id "$kid" 2>&1) && ok "enable-key" || bad "enable-key" "$out"
out=$(kms enable-key-rotation --key-id "$kid" --rotation-period-in-days 90 2>&1) \
  && [ "$(kms get-key-rotation-status --key-id "$kid" | field "['RotationPeriodInDays']")" = 90 ] \
  && ok "enable-key-rotation / get-key-rotation-status" || bad "enable-key-rotation" "$out"
kms encrypt --key-id "$kid" --plaintext "fileb://$work/pt" | field "['CiphertextBlob']" | base64 -d >"$work/ct.v1"
out=$(kms rotate-key-on-demand --key-id "$kid" 2>&1) && ok "rotate-key-on-demand" || bad "rotate-key-on-demand" "$out"
out=$(kms list-key-rotations --key-id "$kid" 2>&1) && [ "$(field "['Rotations'][0]['RotationType']" <<<"$out")" = ON_DEMAND ] \
  && ok "list-key-rotations" || bad "list-key-rotations" "$out"
out=$(kms decrypt --ciphertext-blob "fileb://$work/ct.v1" 2>&1) && [ "$(field "['Plaintext']" <<<"$out" | base64 -d)" = "hello, kmsd" ] \
  && ok "decrypt pre-rotation blob" || bad "decrypt pre-rotation blob" "$out"
out=$(kms re-encrypt --ciphertext-blob "fileb://$work/ct.v1" --destination-key-id "$key" --destination-encryption-context moved=yes 2>&1) \
  && field "['CiphertextBlob']" <<<"$out" | base64 -d >"$work/ct.re" \
  && [ "$(kms decrypt --ciphertext-blob "fileb://$work/ct.re" --encryption-context moved=yes | field "['Plaintext']" | base64 -d)" = "hello, kmsd" ] \
  && ok "re-encrypt" || bad "re-encrypt" "$out"
out=$(kms disable-key-rotation --key-id "$kid" 2>&1) && ok "disable-key-rotation" || bad "disable-key-rotation" "$out"
out=$(kms schedule-key-deletion --key-id "$kid" --pending-window-in-days 7 2>&1) \
  && [ "$(field "['KeyState']" <<<"$out")" = PendingDeletion ] && ok "schedule-key-deletion" || bad "schedule-key-deletion" "$out"
out=$(kms encrypt --key-id "$kid" --plaintext "fileb://$work/pt" 2>&1) \
  && bad "encrypt with key pending deletion" || { grep -q KMSInvalidStateException <<<"$out" && ok "pending deletion -> KMSInvalidStateException" || bad "pending deletion" "$out"; }
out=$(kms cancel-key-deletion --key-id "$kid" 2>&1) \
  && [ "$(kms describe-key --key-id "$kid" | field "['KeyMetadata']['KeyState']")" = Disabled ] && ok "cancel-key-deletion" || bad "cancel-key-deletion" "$out"
out=$(kms get-key-last-usage --key-id "$key" 2>&1) && grep -q '"Operation"' <<<"$out" && ok "get-key-last-usage" || bad "get-key-last-usage" "$out"
out=$(kms update-alias --alias-name alias/e2e --target-key-id "$kid" 2>&1) && ok "update-alias" || bad "update-alias" "$out"
out=$(kms list-aliases --key-id "$kid" 2>&1) && grep -q alias/e2e <<<"$out" && ok "list-aliases" || bad "list-aliases" "$out"
out=$(kms update-alias --alias-name alias/e2e --target-key-id "$key" 2>&1) && ok "update-alias back" || bad "update-alias back" "$out"
kms create-alias --alias-name alias/tmp --target-key-id "$key" >/dev/null 2>&1
out=$(kms delete-alias --alias-name alias/tmp 2>&1) && ! kms list-aliases | grep -q alias/tmp && ok "delete-alias" || bad "delete-alias" "$out"
out=$(kms delete-alias --alias-name alias/gone 2>&1) \
  && bad "delete missing alias" || { grep -q NotFoundException <<<"$out" && ok "delete missing alias -> NotFoundException" || bad "delete-alias" "$out"; }

# Access control (issue #7): a second principal, key policy, grants, audit log.
out=$(kms get-key-policy --key-id "$key" --policy-name default 2>&1) && grep -q ':root' <<<"$out" \
  && ok "get-key-policy (default policy)" || bad "get-key-policy" "$out"
"$BIN" credentials create --principal user/e2e --out "$work/user-creds" --endpoint "$url" --credentials "$work/data/credentials" >/dev/null 2>&1
ukms() { AWS_SHARED_CREDENTIALS_FILE=$work/user-creds aws kms "$@" --endpoint-url "$url" --output json; }
out=$(ukms encrypt --key-id "$key" --plaintext "fileb://$work/pt" 2>&1) \
  && bad "user without permission encrypts" "$out" || { grep -q AccessDeniedException <<<"$out" && ok "user without permission -> AccessDeniedException" || bad "access denied" "$out"; }
out=$(kms create-grant --key-id "$key" --grantee-principal arn:aws:iam::111122223333:user/e2e --operations Encrypt Decrypt \
  --constraints EncryptionContextSubset={team=e2e} 2>&1) && token=$(field "['GrantToken']" <<<"$out") && ok "create-grant" || bad "create-grant" "$out"
out=$(ukms encrypt --key-id "$key" --plaintext "fileb://$work/pt" --encryption-context team=e2e --grant-tokens "${token:-x}" 2>&1) \
  && ok "encrypt through a grant" || bad "encrypt through a grant" "$out"
out=$(ukms encrypt --key-id "$key" --plaintext "fileb://$work/pt" --encryption-context team=other 2>&1) \
  && bad "grant constraint ignored" "$out" || { grep -q AccessDeniedException <<<"$out" && ok "grant constraint holds" || bad "grant constraint" "$out"; }
out=$(kms list-grants --key-id "$key" 2>&1) && gid=$(field "['Grants'][0]['GrantId']" <<<"$out") && ok "list-grants" || bad "list-grants" "$out"
out=$(kms revoke-grant --key-id "$key" --grant-id "${gid:-x}" 2>&1) && ok "revoke-grant" || bad "revoke-grant" "$out"
cat >"$work/policy.json" <<POLICY
{"Version":"2012-10-17","Statement":[
 {"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111122223333:root"},"Action":"kms:*","Resource":"*"},
 {"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111122223333:user/e2e"},"Action":"kms:Encrypt","Resource":"*"}]}
POLICY
out=$(kms put-key-policy --key-id "$key" --policy-name default --policy "file://$work/policy.json" 2>&1) && ok "put-key-policy" || bad "put-key-policy" "$out"
out=$(ukms encrypt --key-id "$key" --plaintext "fileb://$work/pt" 2>&1) && ok "encrypt allowed by key policy" || bad "encrypt allowed by key policy" "$out"
grep -q '"errorCode":"AccessDeniedException"' "$work/data/audit/audit.log" 2>/dev/null && ok "audit log records the denial" || bad "audit log"

# Asymmetric and HMAC keys (issue #6): sign, verify, get-public-key; openssl
# verifies kmsd's signatures with the public key get-public-key returns.
for spec_alg in ECC_NIST_P256:ECDSA_SHA_256:sha256: RSA_2048:RSASSA_PSS_SHA_256:sha256:pss; do
  IFS=: read -r spec alg dgst pad <<<"$spec_alg"
  if ! out=$(kms create-key --key-spec "$spec" --key-usage SIGN_VERIFY 2>&1); then bad "create-key $spec" "$out"; continue; fi
  akey=$(field "['KeyMetadata']['KeyId']" <<<"$out")
  grep -q "$alg" <<<"$out" && ok "create-key $spec SIGN_VERIFY lists $alg" || bad "create-key $spec algorithms" "$out"
  if out=$(kms sign --key-id "$akey" --message "fileb://$work/pt" --message-type RAW --signing-algorithm "$alg" 2>&1); then
    field "['Signature']" <<<"$out" | base64 -d >"$work/sig"; ok "sign $spec $alg"
  else bad "sign $spec" "$out"; continue; fi
  out=$(kms verify --key-id "$akey" --message "fileb://$work/pt" --message-type RAW --signing-algorithm "$alg" --signature "fileb://$work/sig" 2>&1) \
    && [ "$(field "['SignatureValid']" <<<"$out")" = True ] && ok "verify $spec" || bad "verify $spec" "$out"
  printf 'hello, kmsd!' >"$work/pt2"
  out=$(kms verify --key-id "$akey" --message "fileb://$work/pt2" --message-type RAW --signing-algorithm "$alg" --signature "fileb://$work/sig" 2>&1) \
    && bad "verify of another message succeeded" || { grep -q KMSInvalidSignatureException <<<"$out" && ok "other message -> KMSInvalidSignatureException" || bad "verify other message" "$out"; }
  openssl dgst "-$dgst" -binary "$work/pt" >"$work/digest"
  out=$(kms sign --key-id "$akey" --message "fileb://$work/digest" --message-type DIGEST --signing-algorithm "$alg" 2>&1) \
    && field "['Signature']" <<<"$out" | base64 -d >"$work/sig.d" && ok "sign DIGEST $spec" || bad "sign DIGEST $spec" "$out"
  if out=$(kms get-public-key --key-id "$akey" 2>&1) && [ "$(field "['KeySpec']" <<<"$out")" = "$spec" ]; then
    field "['PublicKey']" <<<"$out" | base64 -d >"$work/pub.der"; ok "get-public-key $spec"
  else bad "get-public-key $spec" "$out"; continue; fi
  opts=(-pkeyopt "digest:$dgst")
  [ "$pad" = pss ] && opts+=(-pkeyopt rsa_padding_mode:pss -pkeyopt rsa_pss_saltlen:digest)
  for s in sig sig.d; do
    out=$(openssl pkeyutl -verify -pubin -keyform DER -inkey "$work/pub.der" -in "$work/digest" -sigfile "$work/$s" "${opts[@]}" 2>&1) \
      && ok "openssl verifies $spec $s" || bad "openssl verify $spec $s" "$out"
  done
done
if out=$(kms create-key --key-spec HMAC_256 --key-usage GENERATE_VERIFY_MAC 2>&1); then
  hkey=$(field "['KeyMetadata']['KeyId']" <<<"$out")
  out=$(kms generate-mac --key-id "$hkey" --message "fileb://$work/pt" --mac-algorithm HMAC_SHA_256 2>&1) \
    && field "['Mac']" <<<"$out" | base64 -d >"$work/mac" && ok "generate-mac" || bad "generate-mac" "$out"
  out=$(kms verify-mac --key-id "$hkey" --message "fileb://$work/pt" --mac-algorithm HMAC_SHA_256 --mac "fileb://$work/mac" 2>&1) \
    && [ "$(field "['MacValid']" <<<"$out")" = True ] && ok "verify-mac" || bad "verify-mac" "$out"
  out=$(kms verify-mac --key-id "$hkey" --message "fileb://$work/pt2" --mac-algorithm HMAC_SHA_256 --mac "fileb://$work/mac" 2>&1) \
    && bad "verify-mac of another message" || { grep -q KMSInvalidMacException <<<"$out" && ok "other message -> KMSInvalidMacException" || bad "verify-mac other" "$out"; }
else bad "create-key HMAC_256" "$out"; fi

# ECDH: kmsd and openssl derive the same secret from the two key pairs.
if out=$(kms create-key --key-spec ECC_NIST_P384 --key-usage KEY_AGREEMENT 2>&1); then
  ekey=$(field "['KeyMetadata']['KeyId']" <<<"$out")
  kms get-public-key --key-id "$ekey" | field "['PublicKey']" | base64 -d >"$work/kms-ecdh.der"
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-384 -out "$work/peer.pem" 2>/dev/null
  openssl pkey -in "$work/peer.pem" -pubout -outform DER -out "$work/peer.der"
  if out=$(kms derive-shared-secret --key-id "$ekey" --key-agreement-algorithm ECDH --public-key "fileb://$work/peer.der" 2>&1); then
    field "['SharedSecret']" <<<"$out" | base64 -d >"$work/ss.kms"
    openssl pkeyutl -derive -inkey "$work/peer.pem" -peerkey "$work/kms-ecdh.der" -peerform DER -out "$work/ss.openssl" 2>/dev/null
    cmp -s "$work/ss.kms" "$work/ss.openssl" && ok "derive-shared-secret matches openssl" || bad "derive-shared-secret differs from openssl"
  else bad "derive-shared-secret" "$out"; fi
else bad "create-key ECC_NIST_P384 KEY_AGREEMENT" "$out"; fi
# SM2 (China Regions only in AWS): SM2DSA signatures that openssl verifies with
# the default distinguishing ID, and an openssl SM2PKE ciphertext kmsd decrypts.
if out=$(kms create-key --key-spec SM2 --key-usage SIGN_VERIFY 2>&1); then
  skey=$(field "['KeyMetadata']['KeyId']" <<<"$out")
  grep -q SM2DSA <<<"$out" && ok "create-key SM2 SIGN_VERIFY lists SM2DSA" || bad "create-key SM2 algorithms" "$out"
  out=$(kms sign --key-id "$skey" --message "fileb://$work/pt" --message-type RAW --signing-algorithm SM2DSA 2>&1) \
    && field "['Signature']" <<<"$out" | base64 -d >"$work/sm2.sig" && ok "sign SM2 SM2DSA" || bad "sign SM2" "$out"
  out=$(kms verify --key-id "$skey" --message "fileb://$work/pt" --signing-algorithm SM2DSA --signature "fileb://$work/sm2.sig" 2>&1) \
    && [ "$(field "['SignatureValid']" <<<"$out")" = True ] && ok "verify SM2" || bad "verify SM2" "$out"
  if out=$(kms get-public-key --key-id "$skey" 2>&1) && [ "$(field "['KeySpec']" <<<"$out")" = SM2 ]; then
    field "['PublicKey']" <<<"$out" | base64 -d >"$work/sm2pub.der"
    openssl pkey -pubin -inform DER -in "$work/sm2pub.der" -text -noout 2>&1 | grep -q 'ASN1 OID: SM2' \
      && ok "get-public-key SM2 (sm2p256v1 SubjectPublicKeyInfo)" || bad "get-public-key SM2 curve"
    out=$(openssl pkeyutl -verify -pubin -keyform DER -inkey "$work/sm2pub.der" -rawin -in "$work/pt" -sigfile "$work/sm2.sig" \
      -digest sm3 -pkeyopt distid:1234567812345678 2>&1) && ok "openssl verifies SM2DSA (distid 1234567812345678)" || bad "openssl verify SM2DSA" "$out"
  else bad "get-public-key SM2" "$out"; fi
else bad "create-key SM2 SIGN_VERIFY" "$out"; fi
if out=$(kms create-key --key-spec SM2 --key-usage ENCRYPT_DECRYPT 2>&1); then
  skey=$(field "['KeyMetadata']['KeyId']" <<<"$out")
  kms get-public-key --key-id "$skey" | field "['PublicKey']" | base64 -d >"$work/sm2enc.der"
  openssl pkeyutl -encrypt -pubin -keyform DER -inkey "$work/sm2enc.der" -in "$work/pt" -out "$work/sm2.ct" 2>/dev/null
  dec=$(kms decrypt --key-id "$skey" --encryption-algorithm SM2PKE --ciphertext-blob "fileb://$work/sm2.ct" 2>&1 | field "['Plaintext']" 2>/dev/null | base64 -d | base64 -w0)
  [ -n "$dec" ] && [ "$dec" = "$(base64 -w0 <"$work/pt")" ] && ok "decrypt of an openssl SM2PKE ciphertext" || bad "decrypt SM2PKE"
else bad "create-key SM2 ENCRYPT_DECRYPT" "$out"; fi
# A data key pair: the private key decrypts and openssl reads it.
if out=$(kms generate-data-key-pair --key-id "$key" --key-pair-spec ECC_NIST_P256 2>&1); then
  field "['PrivateKeyCiphertextBlob']" <<<"$out" | base64 -d >"$work/dkp.ct"
  field "['PrivateKeyPlaintext']" <<<"$out" | base64 -d >"$work/dkp.der"
  dec=$(kms decrypt --ciphertext-blob "fileb://$work/dkp.ct" | field "['Plaintext']" | base64 -d | base64 -w0)
  [ "$dec" = "$(base64 -w0 <"$work/dkp.der")" ] && openssl pkey -inform DER -in "$work/dkp.der" -noout 2>/dev/null \
    && ok "generate-data-key-pair" || bad "generate-data-key-pair"
else bad "generate-data-key-pair" "$out"; fi
# Imported key material (issue #11), wrapped with OpenSSL as the guide shows.
ext=$(kms create-key --origin EXTERNAL --description imported 2>&1 | field "['KeyMetadata']['KeyId']")
[ "$(kms describe-key --key-id "$ext" | field "['KeyMetadata']['KeyState']")" = PendingImport ] \
  && ok "create-key --origin EXTERNAL -> PendingImport" || bad "create-key --origin EXTERNAL"
params() { # params ALGORITHM SPEC: the wrapping public key and import token into $work
  local out
  out=$(kms get-parameters-for-import --key-id "$ext" --wrapping-algorithm "$1" --wrapping-key-spec "$2" 2>&1) || { bad "get-parameters-for-import $1" "$out"; return; }
  field "['PublicKey']" <<<"$out" | base64 -d >"$work/WrappingPublicKey.bin"
  field "['ImportToken']" <<<"$out" | base64 -d >"$work/ImportToken.bin"
}
oaep() { openssl pkeyutl -encrypt -in "$1" -out "$2" -inkey "$work/WrappingPublicKey.bin" -keyform DER -pubin \
  -pkeyopt rsa_padding_mode:oaep -pkeyopt rsa_oaep_md:sha256 -pkeyopt rsa_mgf1_md:sha256; }
import() { kms import-key-material --key-id "$ext" --encrypted-key-material "fileb://$work/EncryptedKeyMaterial.bin" \
  --import-token "fileb://$work/ImportToken.bin" --expiration-model KEY_MATERIAL_DOES_NOT_EXPIRE; }
kwrap() { # kwrap FILE: RSA_AES_KEY_WRAP_SHA_256 of FILE into EncryptedKeyMaterial.bin
  openssl rand -out "$work/aes-key.bin" 32
  openssl enc -id-aes256-wrap-pad -K "$(xxd -p <"$work/aes-key.bin" | tr -d '\n')" -iv A65959A6 \
    -in "$1" -out "$work/key-material-wrapped.bin"
  oaep "$work/aes-key.bin" "$work/aes-key-wrapped.bin"
  cat "$work/aes-key-wrapped.bin" "$work/key-material-wrapped.bin" >"$work/EncryptedKeyMaterial.bin"
}
params RSA_AES_KEY_WRAP_SHA_256 RSA_4096 && ok "get-parameters-for-import"
openssl rand -out "$work/PlaintextKeyMaterial.bin" 32
kwrap "$work/PlaintextKeyMaterial.bin"
out=$(import 2>&1) && [ "$(kms describe-key --key-id "$ext" | field "['KeyMetadata']['KeyState']")" = Enabled ] \
  && ok "import-key-material (OpenSSL, RSA_AES_KEY_WRAP_SHA_256)" || bad "import-key-material" "$out"
kms encrypt --key-id "$ext" --plaintext "fileb://$work/pt" | field "['CiphertextBlob']" | base64 -d >"$work/ct.ext"
out=$(kms decrypt --ciphertext-blob "fileb://$work/ct.ext" 2>&1) && [ "$(field "['Plaintext']" <<<"$out" | base64 -d)" = "hello, kmsd" ] \
  && ok "encrypt/decrypt with imported material" || bad "decrypt with imported material" "$out"
params RSAES_OAEP_SHA_256 RSA_2048
openssl rand -out "$work/other.bin" 32 && oaep "$work/other.bin" "$work/EncryptedKeyMaterial.bin"
out=$(import 2>&1) && bad "different material re-imported" \
  || { grep -q IncorrectKeyMaterialException <<<"$out" && ok "different material -> IncorrectKeyMaterialException" || bad "re-import" "$out"; }
out=$(kms delete-imported-key-material --key-id "$ext" 2>&1) && [ "$(kms describe-key --key-id "$ext" | field "['KeyMetadata']['KeyState']")" = PendingImport ] \
  && ok "delete-imported-key-material" || bad "delete-imported-key-material" "$out"
out=$(kms decrypt --ciphertext-blob "fileb://$work/ct.ext" 2>&1) && bad "decrypt without material" \
  || { grep -q KMSInvalidStateException <<<"$out" && ok "no material -> KMSInvalidStateException" || bad "decrypt without material" "$out"; }
oaep "$work/PlaintextKeyMaterial.bin" "$work/EncryptedKeyMaterial.bin"
out=$(import 2>&1) && [ "$(kms decrypt --ciphertext-blob "fileb://$work/ct.ext" | field "['Plaintext']" | base64 -d)" = "hello, kmsd" ] \
  && ok "re-import (OpenSSL, RSAES_OAEP_SHA_256): old ciphertext decrypts" || bad "re-import same material" "$out"
# Rotation of imported material: new material waits (PENDING_ROTATION) until
# rotate-key-on-demand makes it current; the old ciphertext still decrypts.
params RSAES_OAEP_SHA_256 RSA_2048
openssl rand -out "$work/NewKeyMaterial.bin" 32 && oaep "$work/NewKeyMaterial.bin" "$work/EncryptedKeyMaterial.bin"
out=$(kms import-key-material --key-id "$ext" --encrypted-key-material "fileb://$work/EncryptedKeyMaterial.bin" \
  --import-token "fileb://$work/ImportToken.bin" --expiration-model KEY_MATERIAL_DOES_NOT_EXPIRE --import-type NEW_KEY_MATERIAL 2>&1) \
  && [ "$(kms list-key-rotations --key-id "$ext" --include-key-material ALL_KEY_MATERIAL | field "['Rotations'][-1]['KeyMaterialState']")" = PENDING_ROTATION ] \
  && ok "import-key-material --import-type NEW_KEY_MATERIAL -> PENDING_ROTATION" || bad "new imported material" "$out"
out=$(kms rotate-key-on-demand --key-id "$ext" 2>&1) \
  && [ "$(kms list-key-rotations --key-id "$ext" | field "['Rotations'][0]['RotationType']")" = ON_DEMAND ] \
  && [ "$(kms decrypt --ciphertext-blob "fileb://$work/ct.ext" | field "['Plaintext']" | base64 -d)" = "hello, kmsd" ] \
  && ok "rotate-key-on-demand of imported material; the old ciphertext decrypts" || bad "rotate imported material" "$out"
# An asymmetric key with imported material: an ECC_NIST_P256 private key made
# and wrapped by OpenSSL; kmsd's signature checks out with the original
# public key.
ext=$(kms create-key --origin EXTERNAL --key-spec ECC_NIST_P256 --key-usage SIGN_VERIFY 2>&1 | field "['KeyMetadata']['KeyId']")
params RSA_AES_KEY_WRAP_SHA_256 RSA_3072
openssl genpkey -algorithm ec -pkeyopt ec_paramgen_curve:P-256 2>/dev/null \
  | openssl pkcs8 -topk8 -outform der -nocrypt >"$work/ECC_NIST_P256_PrivateKey.der"
openssl pkey -inform DER -in "$work/ECC_NIST_P256_PrivateKey.der" -pubout -outform DER -out "$work/ecc-import.pub"
kwrap "$work/ECC_NIST_P256_PrivateKey.der"
out=$(import 2>&1) && [ "$(kms get-public-key --key-id "$ext" | field "['PublicKey']")" = "$(base64 -w0 <"$work/ecc-import.pub")" ] \
  && ok "import-key-material ECC_NIST_P256 (OpenSSL): get-public-key is the original public key" || bad "asymmetric import" "$out"
if out=$(kms sign --key-id "$ext" --message "fileb://$work/pt" --message-type RAW --signing-algorithm ECDSA_SHA_256 2>&1); then
  field "['Signature']" <<<"$out" | base64 -d >"$work/sig.imported"
  openssl dgst -sha256 -verify "$work/ecc-import.pub" -keyform DER -signature "$work/sig.imported" "$work/pt" >/dev/null 2>&1 \
    && ok "sign with an imported key, verified by openssl with the original key" || bad "openssl verify of an imported key's signature"
else bad "sign with an imported key" "$out"; fi

# The AWS Encryption SDK for JavaScript against kmsd (issue #3 interop).
if [ -d test/interop/js/node_modules ]; then
  arn=$(kms describe-key --key-id "$key" | field "['KeyMetadata']['Arn']")
  if out=$(KMSD_URL=$url KMSD_KEY_ARN=$arn node test/interop/js/interop.mjs 2>&1); then ok "AWS Encryption SDK for JavaScript interop"
  else bad "AWS Encryption SDK for JavaScript interop" "$out"; fi
else
  bad "AWS Encryption SDK for JavaScript interop: run make test-deps (npm ci in test/interop/js)"
fi

stop
start
out=$(kms decrypt --ciphertext-blob "fileb://$work/ct" --encryption-context app=e2e 2>&1) \
  && [ "$(field "['Plaintext']" <<<"$out" | base64 -d)" = "hello, kmsd" ] && ok "decrypt after restart" || bad "decrypt after restart" "$out"
out=$(kms describe-key --key-id alias/e2e 2>&1) && ok "alias after restart" || bad "alias after restart" "$out"
out=$(kms decrypt --ciphertext-blob "fileb://$work/ct.ext" 2>&1) && [ "$(field "['Plaintext']" <<<"$out" | base64 -d)" = "hello, kmsd" ] \
  && ok "imported material after restart" || bad "imported material after restart" "$out"
stop

echo "e2e-cli: $pass passed, $fail failed"
[ "$fail" = 0 ]
