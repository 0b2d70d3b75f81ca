package bench

import (
	"strings"
	"testing"
	"time"
)

func TestParseMix(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Mix
		err  string
	}{
		{"gdk=1,decrypt=1,encrypt=0,gdkwp=0", Mix{GenerateDataKey: 1, Decrypt: 1}, ""},
		{"GenerateDataKey=3, Decrypt=1", Mix{GenerateDataKey: 3, Decrypt: 1}, ""},
		{"encrypt=2,gdkwp=5", Mix{Encrypt: 2, GenerateDataKeyWithoutPlaintext: 5}, ""},
		{"", Mix{}, ""},
		{"gdk", Mix{}, "want name=weight"},
		{"gdk=-1", Mix{}, "non-negative"},
		{"gdk=x", Mix{}, "non-negative"},
		{"sign=1", Mix{}, "unknown operation"},
	} {
		got, err := ParseMix(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("ParseMix(%q) error = %v, want %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("ParseMix(%q) = %+v, %v; want %+v", tc.in, got, err, tc.want)
		}
		if tc.in != "" {
			if back, _ := ParseMix(got.String()); back != got {
				t.Errorf("String round trip: %q -> %+v", got.String(), back)
			}
		}
	}
}

func TestConfigValidate(t *testing.T) {
	ok := Config{Endpoints: []string{"http://127.0.0.1:4599"}, KeyID: "alias/app"}
	if err := ok.Validate(); err != nil {
		t.Fatalf("minimal config: %v", err)
	}
	for _, tc := range []struct {
		field string
		edit  func(*Config)
	}{
		{"Endpoints", func(c *Config) { c.Endpoints = nil }},
		{"Endpoints", func(c *Config) { c.Endpoints = []string{"127.0.0.1:4599"} }},
		{"KeyID", func(c *Config) { c.KeyID = "" }},
		{"Mix", func(c *Config) { c.Mix = Mix{GenerateDataKey: -1} }},
		{"DecryptPool", func(c *Config) { c.DecryptPool = -1 }},
		{"PlaintextSize", func(c *Config) { c.PlaintextSize = 4097 }},
		{"Concurrency", func(c *Config) { c.Concurrency = -1 }},
		{"Rate", func(c *Config) { c.Rate = -1 }},
		{"Warmup", func(c *Config) { c.Warmup = -time.Second }},
		{"Duration", func(c *Config) { c.Duration = -time.Second }},
		{"MaxRequests", func(c *Config) { c.MaxRequests = -1 }},
		{"Timeout", func(c *Config) { c.Timeout = -time.Second }},
	} {
		c := ok
		tc.edit(&c)
		err := c.Validate()
		if err == nil || !strings.Contains(err.Error(), "Config."+tc.field) {
			t.Errorf("%s: Validate() = %v, want it to name the field", tc.field, err)
		}
	}
	d := ok.withDefaults()
	if d.Region != DefaultRegion || d.Concurrency != DefaultConcurrency || d.Duration != DefaultDuration ||
		d.DecryptPool != DefaultDecryptPool || d.Mix != (Mix{GenerateDataKey: 1, Decrypt: 1}) || d.Timeout != DefaultTimeout {
		t.Errorf("defaults: %+v", d)
	}
}
