// Interop: the AWS Encryption SDK for JavaScript, with its KMS keyring
// pointed at kmsd, encrypts and decrypts messages; with the caching
// materials manager and with a discovery keyring.
// Env: KMSD_URL, KMSD_KEY_ARN, AWS_SHARED_CREDENTIALS_FILE (or AWS_* keys).
// Prints "interop-js: N passed, M failed" last; exits non-zero on failure.
import {
  buildClient, CommitmentPolicy, KmsKeyringNode, NodeCachingMaterialsManager,
  getLocalCryptographicMaterialsCache, getClient,
} from '@aws-crypto/client-node'
import { KMS } from '@aws-sdk/client-kms'

const url = process.env.KMSD_URL
const keyArn = process.env.KMSD_KEY_ARN
if (!url || !keyArn) {
  console.error('interop-js: set KMSD_URL and KMSD_KEY_ARN')
  process.exit(2)
}

let kmsCalls = 0
const clientProvider = (region) => {
  const c = getClient(KMS, { endpoint: url, maxAttempts: 1 })(region)
  c.middlewareStack.add((next) => async (args) => { kmsCalls++; return next(args) }, { step: 'initialize' })
  return c
}
const { encrypt, decrypt } = buildClient(CommitmentPolicy.REQUIRE_ENCRYPT_REQUIRE_DECRYPT)

let pass = 0, fail = 0
async function check (name, fn) {
  try { await fn(); pass++; console.log(`ok   - ${name}`) } catch (e) { fail++; console.log(`FAIL - ${name}: ${e && e.stack || e}`) }
}
function assert (cond, msg) { if (!cond) throw new Error(msg) }

const context = { tenant: 'interop', purpose: 'kmsd' }
const plaintext = Buffer.from('hello from the AWS Encryption SDK for JavaScript, through kmsd')

await check('encrypt and decrypt with a KMS keyring', async () => {
  const keyring = new KmsKeyringNode({ generatorKeyId: keyArn, clientProvider })
  const { result } = await encrypt(keyring, plaintext, { encryptionContext: context })
  const { plaintext: out, messageHeader } = await decrypt(keyring, result)
  assert(out.equals(plaintext), 'plaintext differs')
  assert(messageHeader.encryptionContext.tenant === 'interop', 'encryption context lost')
  assert(messageHeader.encryptedDataKeys[0].providerInfo === keyArn, 'provider info is not the key ARN')
})

await check('unsigned algorithm suite, large framed message', async () => {
  const keyring = new KmsKeyringNode({ generatorKeyId: keyArn, clientProvider })
  const big = Buffer.alloc(200000, 7)
  const { result } = await encrypt(keyring, big, { suiteId: 0x0478, frameLength: 4096 })
  const { plaintext: out } = await decrypt(keyring, result)
  assert(out.equals(big), 'plaintext differs')
})

await check('decrypt with a discovery keyring', async () => {
  const keyring = new KmsKeyringNode({ generatorKeyId: keyArn, clientProvider })
  const { result } = await encrypt(keyring, plaintext, { encryptionContext: context })
  const discovery = new KmsKeyringNode({ discovery: true, clientProvider })
  const { plaintext: out } = await decrypt(discovery, result)
  assert(out.equals(plaintext), 'plaintext differs')
})

await check('caching materials manager reuses data keys', async () => {
  const keyring = new KmsKeyringNode({ generatorKeyId: keyArn, clientProvider })
  const cmm = new NodeCachingMaterialsManager({
    backingMaterials: keyring,
    cache: getLocalCryptographicMaterialsCache(100),
    maxAge: 60 * 1000,
    maxMessagesEncrypted: 10,
  })
  const before = kmsCalls
  const messages = []
  for (let i = 0; i < 5; i++) {
    const { result } = await encrypt(cmm, plaintext, { encryptionContext: context, plaintextLength: plaintext.length })
    messages.push(result)
  }
  const generateCalls = kmsCalls - before
  assert(generateCalls === 1, `5 messages made ${generateCalls} KMS calls, want 1 (cached)`)
  for (const m of messages) {
    const { plaintext: out } = await decrypt(cmm, m)
    assert(out.equals(plaintext), 'plaintext differs')
  }
})

await check('tampered message fails', async () => {
  const keyring = new KmsKeyringNode({ generatorKeyId: keyArn, clientProvider })
  const { result } = await encrypt(keyring, plaintext)
  const bad = Buffer.from(result)
  bad[bad.length - 40] ^= 1
  let threw = false
  try { await decrypt(keyring, bad) } catch { threw = true }
  assert(threw, 'tampered message decrypted')
})

console.log(`interop-js: ${pass} passed, ${fail} failed`)
process.exit(fail === 0 ? 0 : 1)
