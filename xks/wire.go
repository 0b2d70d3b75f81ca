package xks

import (
	"crypto/sha256"
	"encoding/binary"
)

// RequestMetadata is the requestMetadata object of every XKS request.
type RequestMetadata struct {
	AWSPrincipalArn string `json:"awsPrincipalArn,omitempty"`
	AWSSourceVpc    string `json:"awsSourceVpc,omitempty"`
	AWSSourceVpce   string `json:"awsSourceVpce,omitempty"`
	KMSKeyArn       string `json:"kmsKeyArn,omitempty"`
	KMSOperation    string `json:"kmsOperation"`
	KMSRequestID    string `json:"kmsRequestId"`
	KMSViaService   string `json:"kmsViaService,omitempty"`
}

type metadataRequest struct {
	RequestMetadata *RequestMetadata `json:"requestMetadata"`
}

// KeyMetadata is the GetKeyMetadata response.
type KeyMetadata struct {
	KeySpec   string   `json:"keySpec"`
	KeyUsage  []string `json:"keyUsage"`
	KeyStatus string   `json:"keyStatus"`
}

type encryptRequest struct {
	RequestMetadata *RequestMetadata `json:"requestMetadata"`
	AAD             []byte           `json:"additionalAuthenticatedData,omitempty"`
	Plaintext       []byte           `json:"plaintext"`
	Algorithm       string           `json:"encryptionAlgorithm"`
	CDIVAlgorithm   string           `json:"ciphertextDataIntegrityValueAlgorithm,omitempty"`
}

// Sealed is an Encrypt response: what Decrypt needs back (with the AAD).
type Sealed struct {
	Ciphertext         []byte `json:"ciphertext"`
	CiphertextMetadata []byte `json:"ciphertextMetadata,omitempty"`
	IV                 []byte `json:"initializationVector"`
	Tag                []byte `json:"authenticationTag"`
	CDIV               []byte `json:"ciphertextDataIntegrityValue,omitempty"`
}

type decryptRequest struct {
	RequestMetadata    *RequestMetadata `json:"requestMetadata"`
	Ciphertext         []byte           `json:"ciphertext"`
	CiphertextMetadata []byte           `json:"ciphertextMetadata,omitempty"`
	Algorithm          string           `json:"encryptionAlgorithm"`
	AAD                []byte           `json:"additionalAuthenticatedData,omitempty"`
	Tag                []byte           `json:"authenticationTag"`
	IV                 []byte           `json:"initializationVector"`
}

type decryptResponse struct {
	Plaintext []byte `json:"plaintext"`
}

// Health is the GetHealthStatus response.
type Health struct {
	FleetSize       int         `json:"xksProxyFleetSize"`
	Vendor          string      `json:"xksProxyVendor"`
	Model           string      `json:"xksProxyModel"`
	EKMVendor       string      `json:"ekmVendor"`
	EKMFleetDetails []EKMDetail `json:"ekmFleetDetails"`
}

// EKMDetail is one external key manager in a Health response.
type EKMDetail struct {
	ID           string `json:"id"`
	Model        string `json:"model"`
	HealthStatus string `json:"healthStatus"` // ACTIVE, DEGRADED, UNAVAILABLE
}

type errorBody struct {
	ErrorName    string `json:"errorName"`
	ErrorMessage string `json:"errorMessage,omitempty"`
}

// Limits. The spec requires at least 4300 bytes of plaintext and 8192 of
// AAD; the 2-byte AAD length prefix caps AAD at 65535.
const (
	MaxPlaintext  = 65536
	MaxAAD        = 65535
	MaxCiphertext = MaxPlaintext
	maxMetadata   = 20
	// MaxKeyID and the character set are the spec's for externalKeyId.
	MaxKeyID = 128
)

// ValidKeyID reports whether id is a valid externalKeyId: 1 to 128 of
// A-Z a-z 0-9 - . _
func ValidKeyID(id string) bool {
	if len(id) == 0 || len(id) > MaxKeyID {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_') {
			return false
		}
	}
	return true
}

// gcmAAD is the AAD the proxy gives the HSM: 2-byte big-endian length of
// aad || aad || 1-byte length of ciphertextMetadata || ciphertextMetadata,
// as the spec recommends so that neither can stand in for the other.
func gcmAAD(aad, meta []byte) []byte {
	b := make([]byte, 0, 3+len(aad)+len(meta))
	b = binary.BigEndian.AppendUint16(b, uint16(len(aad)))
	b = append(b, aad...)
	b = append(b, byte(len(meta)))
	return append(b, meta...)
}

// CDIV is the Ciphertext Data Integrity Value: SHA-256 over aad ||
// ciphertextMetadata || iv || ciphertext || tag (spec, Appendix C).
func CDIV(aad []byte, s *Sealed) []byte {
	h := sha256.New()
	h.Write(aad)
	h.Write(s.CiphertextMetadata)
	h.Write(s.IV)
	h.Write(s.Ciphertext)
	h.Write(s.Tag)
	return h.Sum(nil)
}
