package agent

import (
	"strconv"
	"time"
)

// Wire types: the JSON shapes of the AWS KMS API (AWS JSON 1.1). Field
// names are AWS's. []byte fields are base64 on the wire, as in AWS.

// epoch is an AWS JSON timestamp: seconds since the epoch as a number.
type epoch int64 // unix nanos

func (e epoch) MarshalJSON() ([]byte, error) {
	return strconv.AppendFloat(nil, float64(e)/1e9, 'f', 3, 64), nil
}

func (e *epoch) UnmarshalJSON(b []byte) error {
	f, err := strconv.ParseFloat(string(b), 64)
	if err != nil {
		return err
	}
	*e = epoch(f * 1e9)
	return nil
}

func epochOf(t time.Time) epoch { return epoch(t.UnixNano()) }

type tagWire struct {
	TagKey   string `json:"TagKey"`
	TagValue string `json:"TagValue"`
}

type keyMetadata struct {
	AWSAccountId                string   `json:"AWSAccountId"`
	KeyId                       string   `json:"KeyId"`
	Arn                         string   `json:"Arn"`
	CreationDate                epoch    `json:"CreationDate"`
	Enabled                     bool     `json:"Enabled"`
	Description                 string   `json:"Description"`
	KeyUsage                    string   `json:"KeyUsage"`
	KeyState                    string   `json:"KeyState"`
	DeletionDate                *epoch   `json:"DeletionDate,omitempty"`
	PendingDeletionWindowInDays *int32   `json:"PendingDeletionWindowInDays,omitempty"`
	Origin                      string   `json:"Origin"`
	ExpirationModel             string   `json:"ExpirationModel,omitempty"`
	ValidTo                     *epoch   `json:"ValidTo,omitempty"`
	KeyManager                  string   `json:"KeyManager"`
	CustomerMasterKeySpec       string   `json:"CustomerMasterKeySpec"`
	KeySpec                     string   `json:"KeySpec"`
	EncryptionAlgorithms        []string `json:"EncryptionAlgorithms,omitempty"`
	SigningAlgorithms           []string `json:"SigningAlgorithms,omitempty"`
	MacAlgorithms               []string `json:"MacAlgorithms,omitempty"`
	KeyAgreementAlgorithms      []string `json:"KeyAgreementAlgorithms,omitempty"`
	MultiRegion                 bool     `json:"MultiRegion"`
	CurrentKeyMaterialId        string   `json:"CurrentKeyMaterialId,omitempty"`
	// Custom key stores (keystore_crypto.go storeMetadata).
	CustomKeyStoreId    string            `json:"CustomKeyStoreId,omitempty"`
	CloudHsmClusterId   string            `json:"CloudHsmClusterId,omitempty"`
	XksKeyConfiguration *xksKeyConfigWire `json:"XksKeyConfiguration,omitempty"`
	// MultiRegionConfiguration: multiregion.go.
	MultiRegionConfiguration *multiRegionConfigWire `json:"MultiRegionConfiguration,omitempty"`
}

type createKeyRequest struct {
	Policy                         *string   `json:"Policy"`
	Description                    *string   `json:"Description"`
	KeyUsage                       *string   `json:"KeyUsage"`
	CustomerMasterKeySpec          *string   `json:"CustomerMasterKeySpec"`
	KeySpec                        *string   `json:"KeySpec"`
	Origin                         *string   `json:"Origin"`
	CustomKeyStoreId               *string   `json:"CustomKeyStoreId"`
	BypassPolicyLockoutSafetyCheck bool      `json:"BypassPolicyLockoutSafetyCheck"`
	Tags                           []tagWire `json:"Tags"`
	MultiRegion                    bool      `json:"MultiRegion"`
	XksKeyId                       *string   `json:"XksKeyId"`
}

type keyMetadataResponse struct {
	KeyMetadata keyMetadata `json:"KeyMetadata"`
}

type describeKeyRequest struct {
	KeyId       *string  `json:"KeyId"`
	GrantTokens []string `json:"GrantTokens"`
}

type listKeysRequest struct {
	Limit  *int64  `json:"Limit"`
	Marker *string `json:"Marker"`
}

type keyListEntry struct {
	KeyId  string `json:"KeyId"`
	KeyArn string `json:"KeyArn"`
}

type listKeysResponse struct {
	Keys       []keyListEntry `json:"Keys"`
	NextMarker string         `json:"NextMarker,omitempty"`
	Truncated  bool           `json:"Truncated"`
}

type encryptRequest struct {
	KeyId               *string           `json:"KeyId"`
	Plaintext           []byte            `json:"Plaintext"`
	EncryptionContext   map[string]string `json:"EncryptionContext"`
	GrantTokens         []string          `json:"GrantTokens"`
	EncryptionAlgorithm *string           `json:"EncryptionAlgorithm"`
	DryRun              bool              `json:"DryRun"`
}

type encryptResponse struct {
	CiphertextBlob      []byte `json:"CiphertextBlob"`
	KeyId               string `json:"KeyId"`
	EncryptionAlgorithm string `json:"EncryptionAlgorithm"`
}

type decryptRequest struct {
	CiphertextBlob      []byte            `json:"CiphertextBlob"`
	EncryptionContext   map[string]string `json:"EncryptionContext"`
	GrantTokens         []string          `json:"GrantTokens"`
	KeyId               *string           `json:"KeyId"`
	EncryptionAlgorithm *string           `json:"EncryptionAlgorithm"`
	Recipient           *struct{}         `json:"Recipient"`
	DryRun              bool              `json:"DryRun"`
}

type decryptResponse struct {
	KeyId               string `json:"KeyId"`
	Plaintext           []byte `json:"Plaintext"`
	EncryptionAlgorithm string `json:"EncryptionAlgorithm"`
	KeyMaterialId       string `json:"KeyMaterialId,omitempty"`
}

type generateDataKeyRequest struct {
	KeyId             *string           `json:"KeyId"`
	EncryptionContext map[string]string `json:"EncryptionContext"`
	NumberOfBytes     *int64            `json:"NumberOfBytes"`
	KeySpec           *string           `json:"KeySpec"`
	GrantTokens       []string          `json:"GrantTokens"`
	Recipient         *struct{}         `json:"Recipient"`
	DryRun            bool              `json:"DryRun"`
}

type generateDataKeyResponse struct {
	CiphertextBlob []byte `json:"CiphertextBlob"`
	Plaintext      []byte `json:"Plaintext,omitempty"`
	KeyId          string `json:"KeyId"`
	KeyMaterialId  string `json:"KeyMaterialId,omitempty"`
}

type generateRandomRequest struct {
	NumberOfBytes    *int64    `json:"NumberOfBytes"`
	CustomKeyStoreId *string   `json:"CustomKeyStoreId"`
	Recipient        *struct{} `json:"Recipient"`
}

type generateRandomResponse struct {
	Plaintext []byte `json:"Plaintext"`
}

type createAliasRequest struct {
	AliasName   *string `json:"AliasName"`
	TargetKeyId *string `json:"TargetKeyId"`
}

type deleteAliasRequest struct {
	AliasName *string `json:"AliasName"`
}

type listAliasesRequest struct {
	KeyId  *string `json:"KeyId"`
	Limit  *int64  `json:"Limit"`
	Marker *string `json:"Marker"`
}

type aliasListEntry struct {
	AliasName       string `json:"AliasName"`
	AliasArn        string `json:"AliasArn"`
	TargetKeyId     string `json:"TargetKeyId,omitempty"`
	CreationDate    epoch  `json:"CreationDate"`
	LastUpdatedDate epoch  `json:"LastUpdatedDate"`
}

type listAliasesResponse struct {
	Aliases    []aliasListEntry `json:"Aliases"`
	NextMarker string           `json:"NextMarker,omitempty"`
	Truncated  bool             `json:"Truncated"`
}

type keyIDRequest struct {
	KeyId *string `json:"KeyId"`
}

type keyIDResponse struct {
	KeyId string `json:"KeyId"`
}

type scheduleKeyDeletionRequest struct {
	KeyId               *string `json:"KeyId"`
	PendingWindowInDays *int64  `json:"PendingWindowInDays"`
}

type scheduleKeyDeletionResponse struct {
	KeyId               string `json:"KeyId"`
	DeletionDate        *epoch `json:"DeletionDate,omitempty"`
	KeyState            string `json:"KeyState"`
	PendingWindowInDays int32  `json:"PendingWindowInDays"`
}

type updateKeyDescriptionRequest struct {
	KeyId       *string `json:"KeyId"`
	Description *string `json:"Description"`
}

type tagResourceRequest struct {
	KeyId *string   `json:"KeyId"`
	Tags  []tagWire `json:"Tags"`
}

type untagResourceRequest struct {
	KeyId   *string  `json:"KeyId"`
	TagKeys []string `json:"TagKeys"`
}

type listResourceTagsRequest struct {
	KeyId  *string `json:"KeyId"`
	Limit  *int64  `json:"Limit"`
	Marker *string `json:"Marker"`
}

type listResourceTagsResponse struct {
	Tags       []tagWire `json:"Tags"`
	NextMarker string    `json:"NextMarker,omitempty"`
	Truncated  bool      `json:"Truncated"`
}

type enableKeyRotationRequest struct {
	KeyId                *string `json:"KeyId"`
	RotationPeriodInDays *int64  `json:"RotationPeriodInDays"`
}

type getKeyRotationStatusResponse struct {
	KeyRotationEnabled   bool   `json:"KeyRotationEnabled"`
	KeyId                string `json:"KeyId"`
	RotationPeriodInDays *int32 `json:"RotationPeriodInDays,omitempty"`
	NextRotationDate     *epoch `json:"NextRotationDate,omitempty"`
}

type listKeyRotationsRequest struct {
	KeyId              *string `json:"KeyId"`
	IncludeKeyMaterial *string `json:"IncludeKeyMaterial"`
	Limit              *int64  `json:"Limit"`
	Marker             *string `json:"Marker"`
}

type rotationEntry struct {
	KeyId            string `json:"KeyId"`
	KeyMaterialId    string `json:"KeyMaterialId"`
	KeyMaterialState string `json:"KeyMaterialState"`
	RotationDate     *epoch `json:"RotationDate,omitempty"`
	RotationType     string `json:"RotationType,omitempty"`
	// Symmetric keys with imported material only:
	ImportState            string `json:"ImportState,omitempty"`
	ExpirationModel        string `json:"ExpirationModel,omitempty"`
	ValidTo                *epoch `json:"ValidTo,omitempty"`
	KeyMaterialDescription string `json:"KeyMaterialDescription,omitempty"`
}

type listKeyRotationsResponse struct {
	Rotations  []rotationEntry `json:"Rotations"`
	NextMarker string          `json:"NextMarker,omitempty"`
	Truncated  bool            `json:"Truncated"`
}

type reEncryptRequest struct {
	CiphertextBlob                 []byte            `json:"CiphertextBlob"`
	SourceEncryptionContext        map[string]string `json:"SourceEncryptionContext"`
	SourceKeyId                    *string           `json:"SourceKeyId"`
	DestinationKeyId               *string           `json:"DestinationKeyId"`
	DestinationEncryptionContext   map[string]string `json:"DestinationEncryptionContext"`
	SourceEncryptionAlgorithm      *string           `json:"SourceEncryptionAlgorithm"`
	DestinationEncryptionAlgorithm *string           `json:"DestinationEncryptionAlgorithm"`
	GrantTokens                    []string          `json:"GrantTokens"`
	DryRun                         bool              `json:"DryRun"`
}

type reEncryptResponse struct {
	CiphertextBlob                 []byte `json:"CiphertextBlob"`
	SourceKeyId                    string `json:"SourceKeyId"`
	KeyId                          string `json:"KeyId"`
	SourceEncryptionAlgorithm      string `json:"SourceEncryptionAlgorithm"`
	DestinationEncryptionAlgorithm string `json:"DestinationEncryptionAlgorithm"`
	SourceKeyMaterialId            string `json:"SourceKeyMaterialId,omitempty"`
	DestinationKeyMaterialId       string `json:"DestinationKeyMaterialId,omitempty"`
}

type keyLastUsageData struct {
	Operation    string `json:"Operation,omitempty"`
	Timestamp    *epoch `json:"Timestamp,omitempty"`
	KmsRequestId string `json:"KmsRequestId,omitempty"`
}

type getKeyLastUsageResponse struct {
	KeyId             string            `json:"KeyId"`
	KeyLastUsage      *keyLastUsageData `json:"KeyLastUsage,omitempty"`
	TrackingStartDate epoch             `json:"TrackingStartDate"`
	KeyCreationDate   epoch             `json:"KeyCreationDate"`
}
