package quota

import "strings"

// Group names a quota bucket: the shared cryptographic quotas (Symmetric,
// RSA, ECC, SM), "gdkp:<KeyPairSpec>" for GenerateDataKeyPair and its
// WithoutPlaintext twin, and "op:<Operation>" for each management
// operation.
type Group string

// The shared cryptographic quotas.
const (
	// Symmetric is the shared quota of Decrypt, Encrypt, GenerateDataKey,
	// GenerateDataKeyWithoutPlaintext, GenerateMac, GenerateRandom,
	// ReEncrypt and VerifyMac on symmetric and HMAC keys.
	Symmetric Group = "symmetric"
	// RSA is the shared quota of Decrypt, Encrypt, ReEncrypt, Sign and
	// Verify on RSA keys.
	RSA Group = "rsa"
	// ECC is the shared quota of Sign, Verify and DeriveSharedSecret on
	// ECC keys.
	ECC Group = "ecc"
	// SM is the shared quota of cryptographic operations on SM2 keys
	// (China Regions only).
	SM Group = "sm"
)

const (
	opPrefix   = "op:"
	gdkpPrefix = "gdkp:"
)

// symmetricRates holds the symmetric quota of the Regions that differ from
// the default of 5,500 requests per second.
var symmetricRates = map[string]float64{
	"us-east-2":      10000,
	"ap-southeast-1": 10000,
	"ap-southeast-2": 10000,
	"ap-northeast-1": 10000,
	"eu-central-1":   10000,
	"eu-west-2":      10000,
	"us-east-1":      50000,
	"us-west-2":      50000,
	"eu-west-1":      50000,
}

const defaultSymmetricRate = 5500

// pairRates is the GenerateDataKeyPair quota per key pair spec.
var pairRates = map[string]float64{
	"ECC_NIST_P256":   100,
	"ECC_NIST_P384":   100,
	"ECC_NIST_P521":   100,
	"ECC_SECG_P256K1": 100,
	"RSA_2048":        1,
	"RSA_3072":        0.5,
	"RSA_4096":        0.1,
	"SM2":             25,
}

// opRates is the quota of each management operation.
var opRates = map[string]float64{
	"CancelKeyDeletion":         5,
	"ConnectCustomKeyStore":     5,
	"CreateAlias":               5,
	"CreateCustomKeyStore":      5,
	"CreateGrant":               50,
	"CreateKey":                 5,
	"DeleteAlias":               15,
	"DeleteCustomKeyStore":      5,
	"DeleteImportedKeyMaterial": 5,
	"DescribeCustomKeyStores":   5,
	"DescribeKey":               2000,
	"DisableKey":                5,
	"DisableKeyRotation":        5,
	"DisconnectCustomKeyStore":  5,
	"EnableKey":                 5,
	"EnableKeyRotation":         15,
	"GetKeyPolicy":              1000,
	"GetKeyRotationStatus":      1000,
	"GetParametersForImport":    0.25,
	"GetPublicKey":              2000,
	"ImportKeyMaterial":         5,
	"ListAliases":               500,
	"ListGrants":                100,
	"ListKeyPolicies":           100,
	"ListKeys":                  500,
	"ListResourceTags":          2000,
	"ListRetirableGrants":       100,
	"PutKeyPolicy":              15,
	"ReplicateKey":              5,
	"RetireGrant":               30,
	"RevokeGrant":               30,
	"ScheduleKeyDeletion":       15,
	"TagResource":               10,
	"UntagResource":             5,
	"UpdateAlias":               5,
	"UpdateCustomKeyStore":      5,
	"UpdateKeyDescription":      5,
	"UpdatePrimaryRegion":       5,
}

// DefaultRates returns AWS KMS's default request quotas for region, in
// requests per second: the shared symmetric, RSA, ECC and SM quotas, the
// GenerateDataKeyPair quota of every key pair spec and the quota of every
// management operation. The map is the caller's own.
func DefaultRates(region string) map[Group]float64 {
	m := make(map[Group]float64, 4+len(pairRates)+len(opRates))
	sym, ok := symmetricRates[region]
	if !ok {
		sym = defaultSymmetricRate
	}
	m[Symmetric] = sym
	m[RSA] = 500
	m[ECC] = 300
	m[SM] = 300
	for spec, r := range pairRates {
		m[Group(gdkpPrefix+spec)] = r
	}
	for op, r := range opRates {
		m[Group(opPrefix+op)] = r
	}
	return m
}

// Precomputed answers of GroupFor, so that it does not allocate.
var (
	symmetricGroups = []Group{Symmetric}
	rsaGroups       = []Group{RSA}
	eccGroups       = []Group{ECC}
	smGroups        = []Group{SM}
	opGroups        = make(map[string][]Group, len(opRates))
	pairGroups      = make(map[string][]Group, len(pairRates))
)

func init() {
	for op := range opRates {
		opGroups[op] = []Group{Group(opPrefix + op)}
	}
	for spec := range pairRates {
		pairGroups[spec] = []Group{Group(gdkpPrefix + spec)}
	}
}

// GroupFor returns the groups a call of operation op on a key of keySpec
// counts against, or nil for an operation that has no quota.
//
// Decrypt, Encrypt and ReEncrypt count against RSA, ECC or SM for keys of
// those specs and against Symmetric otherwise; Sign, Verify and
// DeriveSharedSecret likewise
// (a Sign on a symmetric key fails validation but is still counted).
// GenerateDataKey, GenerateDataKeyWithoutPlaintext, GenerateMac,
// GenerateRandom and VerifyMac count against Symmetric.
// GenerateDataKeyPair and GenerateDataKeyPairWithoutPlaintext count against
// "gdkp:"+keySpec, where keySpec is the requested KeyPairSpec. A
// management operation with a quota counts against "op:"+op.
//
// For ReEncrypt between keys of different specs, call GroupFor for each
// key and pass both results to Allow.
//
// The returned slice is shared: callers must not modify it.
func GroupFor(op string, keySpec string) []Group {
	switch op {
	case "Decrypt", "Encrypt", "ReEncrypt", "Sign", "Verify", "DeriveSharedSecret":
		switch {
		case strings.HasPrefix(keySpec, "RSA_"):
			return rsaGroups
		case strings.HasPrefix(keySpec, "ECC_"):
			return eccGroups
		case keySpec == "SM2":
			return smGroups
		}
		return symmetricGroups
	case "GenerateDataKey", "GenerateDataKeyWithoutPlaintext",
		"GenerateMac", "GenerateRandom", "VerifyMac":
		return symmetricGroups
	case "GenerateDataKeyPair", "GenerateDataKeyPairWithoutPlaintext":
		if g, ok := pairGroups[keySpec]; ok {
			return g
		}
		return []Group{Group(gdkpPrefix + keySpec)}
	}
	return opGroups[op]
}
