// Interop for `kmsd job`: the AWS Encryption SDK for JavaScript, its KMS
// keyring pointed at kmsd, decrypts a file the job wrote, or encrypts a
// file for the job to decrypt.
//
//   node job.mjs decrypt IN OUT [k=v ...]   IN: a message; OUT: plaintext; the pairs must be in its context
//   node job.mjs encrypt IN OUT SUITE FRAME [k=v ...]   SUITE: 0x0478 or 0x0578
//   node job.mjs encrypt-v1 IN OUT SUITE FRAME [k=v ...]   a version 1 message (no key commitment,
//       FORBID_ENCRYPT_ALLOW_DECRYPT); SUITE: 0x0014 ... 0x0378
//   node job.mjs decrypt-v1 IN OUT [k=v ...]   decrypt allowing version 1 (REQUIRE_ENCRYPT_ALLOW_DECRYPT)
//
// Env: KMSD_URL, KMSD_KEY_ARN, AWS_SHARED_CREDENTIALS_FILE (or AWS_* keys).
// Exits non-zero with the SDK's error on failure.
import { readFileSync, writeFileSync } from 'node:fs'
import { buildClient, CommitmentPolicy, KmsKeyringNode, getClient } from '@aws-crypto/client-node'
import { KMS } from '@aws-sdk/client-kms'

const url = process.env.KMSD_URL
const keyArn = process.env.KMSD_KEY_ARN
const [modeArg, inPath, outPath, ...rest] = process.argv.slice(2)
const v1 = (modeArg || '').endsWith('-v1')
const mode = v1 ? modeArg.slice(0, -3) : modeArg
if (!url || !keyArn || !mode || !inPath || !outPath) {
  console.error('usage: KMSD_URL=... KMSD_KEY_ARN=... node job.mjs decrypt|encrypt IN OUT ...')
  process.exit(2)
}
const clientProvider = (region) => getClient(KMS, { endpoint: url, maxAttempts: 1 })(region)
const keyring = new KmsKeyringNode({ generatorKeyId: keyArn, clientProvider })
const policy = !v1 ? CommitmentPolicy.REQUIRE_ENCRYPT_REQUIRE_DECRYPT
  : mode === 'encrypt' ? CommitmentPolicy.FORBID_ENCRYPT_ALLOW_DECRYPT : CommitmentPolicy.REQUIRE_ENCRYPT_ALLOW_DECRYPT
const { encrypt, decrypt } = buildClient(policy)
const pairs = (list) => Object.fromEntries(list.map((kv) => kv.split('=', 2)))

try {
  if (mode === 'decrypt') {
    const want = pairs(rest)
    const { plaintext, messageHeader } = await decrypt(keyring, readFileSync(inPath))
    for (const [k, v] of Object.entries(want)) {
      if (messageHeader.encryptionContext[k] !== v) throw new Error(`context ${k}=${v} missing`)
    }
    writeFileSync(outPath, plaintext)
    console.log(JSON.stringify({ suite: messageHeader.suiteId, frameLength: messageHeader.frameLength, context: messageHeader.encryptionContext, providerInfo: messageHeader.encryptedDataKeys.map((k) => k.providerInfo) }))
  } else if (mode === 'encrypt') {
    const [suite, frame, ...ctx] = rest
    const { result } = await encrypt(keyring, readFileSync(inPath), {
      suiteId: Number(suite), frameLength: Number(frame), encryptionContext: pairs(ctx),
    })
    writeFileSync(outPath, result)
  } else {
    throw new Error(`unknown mode ${mode}`)
  }
} catch (e) {
  console.error(`job.mjs ${modeArg}: ${e && e.stack || e}`)
  process.exit(1)
}
