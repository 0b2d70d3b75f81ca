package agent

import (
	"strings"

	"github.com/kmsd/kmsd/cluster"
)

// GenerateMac and VerifyMac run HMAC in the HSM with the key's secret
// (hsmpool.HMAC); the secret never leaves the HSM.

var macAlgorithms = []string{"HMAC_SHA_224", "HMAC_SHA_256", "HMAC_SHA_384", "HMAC_SHA_512"}

type macRequest struct {
	KeyId        *string  `json:"KeyId"`
	Message      []byte   `json:"Message"`
	MacAlgorithm *string  `json:"MacAlgorithm"`
	Mac          []byte   `json:"Mac"` // VerifyMac only
	GrantTokens  []string `json:"GrantTokens"`
	DryRun       bool     `json:"DryRun"`
}

type generateMacResponse struct {
	Mac          []byte `json:"Mac"`
	MacAlgorithm string `json:"MacAlgorithm"`
	KeyId        string `json:"KeyId"`
}

type verifyMacResponse struct {
	KeyId        string `json:"KeyId"`
	MacValid     bool   `json:"MacValid"`
	MacAlgorithm string `json:"MacAlgorithm"`
}

// macSetup validates a GenerateMac or VerifyMac request and returns the
// key and its current material.
func (s *Server) macSetup(r *request, in *macRequest, verify bool) (*cluster.Key, cluster.Material, error) {
	var m cluster.Material
	if in.Message == nil {
		return nil, m, validationRequired("message")
	}
	if len(in.Message) < 1 || len(in.Message) > maxSignMessage {
		return nil, m, validationLength("message", 1, maxSignMessage)
	}
	if in.KeyId == nil {
		return nil, m, validationRequired("keyId")
	}
	if in.MacAlgorithm == nil {
		return nil, m, validationRequired("macAlgorithm")
	}
	if !oneOf(*in.MacAlgorithm, macAlgorithms) {
		return nil, m, validationEnum("macAlgorithm", *in.MacAlgorithm, strings.Join(macAlgorithms, ", "))
	}
	if verify {
		if in.Mac == nil {
			return nil, m, validationRequired("mac")
		}
		if len(in.Mac) < 1 || len(in.Mac) > maxSignature {
			return nil, m, validationLength("mac", 1, maxSignature)
		}
	}
	if err := checkGrantTokens(in.GrantTokens); err != nil {
		return nil, m, err
	}
	k, err := s.usageKey(r, in.KeyId, usageMAC, in.GrantTokens)
	if err != nil {
		return nil, m, err
	}
	if !oneOf(*in.MacAlgorithm, specs[k.KeySpec].macAlgs) {
		return nil, m, apiErr(errInvalidKeyUsage, "Algorithm %s is incompatible with key spec %s.", *in.MacAlgorithm, k.KeySpec)
	}
	m, ok := k.CurrentMaterial()
	if !ok || m.Form != cluster.MaterialHSMSecret {
		return nil, m, apiErr(errInvalidKeyUsage, "%s has no HMAC key material.", k.Arn)
	}
	if in.DryRun {
		return nil, m, dryRunOK
	}
	return k, m, nil
}

func opGenerateMac(s *Server, r *request) (any, error) {
	var in macRequest
	if err := decode(r, &in); err != nil {
		return nil, err
	}
	k, m, err := s.macSetup(r, &in, false)
	if err != nil {
		return nil, err
	}
	mac, err := s.pool.HMAC(r.ctx, m.Wrapped, specs[k.KeySpec].hmac, in.Message)
	if err != nil {
		return nil, err
	}
	s.usage.record(k.ID, r)
	return &generateMacResponse{Mac: mac, MacAlgorithm: *in.MacAlgorithm, KeyId: k.Arn}, nil
}

func opVerifyMac(s *Server, r *request) (any, error) {
	var in macRequest
	if err := decode(r, &in); err != nil {
		return nil, err
	}
	k, m, err := s.macSetup(r, &in, true)
	if err != nil {
		return nil, err
	}
	ok, err := s.pool.VerifyHMAC(r.ctx, m.Wrapped, specs[k.KeySpec].hmac, in.Message, in.Mac)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, apiErr(errKMSInvalidMac, "The MAC is not valid for this key, message and MAC algorithm.")
	}
	s.usage.record(k.ID, r)
	return &verifyMacResponse{KeyId: k.Arn, MacValid: true, MacAlgorithm: *in.MacAlgorithm}, nil
}
