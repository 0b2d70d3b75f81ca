package hsmpool

import "fmt"

// Default values used for zero Config fields.
const (
	DefaultSessions       = 4
	DefaultMaxKeyHandles  = 4096
	DefaultDomainKeyLabel = "kmsd-domain-key"
)

// maxTokenLabel is the size of CK_TOKEN_INFO.label.
const maxTokenLabel = 32

// Config selects a token and sizes a Pool. Zero values mean defaults.
type Config struct {
	Lib            string // PKCS#11 module path; "" = FindSoftHSM()
	TokenLabel     string // select token by label (used when SlotSet is false)
	Slot           uint   // select token by slot id when SlotSet
	SlotSet        bool
	PIN            string // user PIN
	Sessions       int    // pooled sessions; 0 = 4
	MaxKeyHandles  int    // unwrapped key handles kept; 0 = 4096
	DomainKeyLabel string // "" = "kmsd-domain-key"
}

// Validate reports the first invalid field, by name. It does not touch the
// HSM.
func (c Config) Validate() error {
	switch {
	case !c.SlotSet && c.TokenLabel == "":
		return fmt.Errorf("hsmpool: Config.TokenLabel is required unless Config.SlotSet")
	case len(c.TokenLabel) > maxTokenLabel:
		return fmt.Errorf("hsmpool: Config.TokenLabel is longer than %d bytes", maxTokenLabel)
	case c.PIN == "":
		return fmt.Errorf("hsmpool: Config.PIN is required")
	case c.Sessions < 0:
		return fmt.Errorf("hsmpool: Config.Sessions must not be negative (got %d)", c.Sessions)
	case c.MaxKeyHandles < 0:
		return fmt.Errorf("hsmpool: Config.MaxKeyHandles must not be negative (got %d)", c.MaxKeyHandles)
	}
	return nil
}

// withDefaults returns c with zero fields replaced by their defaults.
func (c Config) withDefaults() Config {
	if c.Sessions == 0 {
		c.Sessions = DefaultSessions
	}
	if c.MaxKeyHandles == 0 {
		c.MaxKeyHandles = DefaultMaxKeyHandles
	}
	if c.DomainKeyLabel == "" {
		c.DomainKeyLabel = DefaultDomainKeyLabel
	}
	return c
}
