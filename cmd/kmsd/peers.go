package main

import (
	"fmt"
	"net/url"
	"sort"
	"strings"

	"github.com/kmsd/kmsd/agent"
)

// regionMap is a repeatable REGION=VALUE flag (--peer-region,
// --peer-credentials).
type regionMap map[string]string

func (m *regionMap) String() string {
	if m == nil || *m == nil {
		return ""
	}
	var parts []string
	for k, v := range *m {
		parts = append(parts, k+"="+v)
	}
	sort.Strings(parts)
	return strings.Join(parts, ",")
}

func (m *regionMap) Set(s string) error {
	region, val, ok := strings.Cut(s, "=")
	region, val = strings.TrimSpace(region), strings.TrimSpace(val)
	if !ok || region == "" || val == "" {
		return fmt.Errorf("%q is not REGION=VALUE", s)
	}
	if *m == nil {
		*m = regionMap{}
	}
	if _, dup := (*m)[region]; dup {
		return fmt.Errorf("region %s given twice", region)
	}
	(*m)[region] = val
	return nil
}

// peers builds the peer Regions of --peer-region and --peer-credentials:
// every peer needs both, and none may be this node's own Region.
func (c serveConfig) peers() ([]agent.Peer, error) {
	var out []agent.Peer
	for region, u := range c.peerRegions {
		if region == c.region {
			return nil, fmt.Errorf("--peer-region %s is this node's own --region", region)
		}
		pu, err := url.Parse(u)
		if err != nil || (pu.Scheme != "http" && pu.Scheme != "https") || pu.Host == "" {
			return nil, fmt.Errorf("--peer-region %s=%s: not an http(s) URL", region, u)
		}
		file, ok := c.peerCreds[region]
		if !ok {
			return nil, fmt.Errorf("--peer-region %s needs --peer-credentials %s=FILE", region, region)
		}
		key, err := readCredentials(file)
		if err != nil {
			return nil, fmt.Errorf("--peer-credentials %s: %w", region, err)
		}
		out = append(out, agent.Peer{Region: region, URL: u, Key: key})
	}
	for region := range c.peerCreds {
		if _, ok := c.peerRegions[region]; !ok {
			return nil, fmt.Errorf("--peer-credentials %s has no --peer-region %s=URL", region, region)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Region < out[j].Region })
	return out, nil
}
