package policy

import (
	"encoding/json"
	"math"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// baseOp is a condition operator without set prefix or IfExists suffix.
type baseOp uint8

const (
	opStringEquals baseOp = iota
	opStringEqualsIgnoreCase
	opStringLike
	opNumericEquals
	opNumericLessThan
	opNumericLessThanEquals
	opNumericGreaterThan
	opNumericGreaterThanEquals
	opDateEquals
	opDateLessThan
	opDateLessThanEquals
	opDateGreaterThan
	opDateGreaterThanEquals
	opBool
	opBinaryEquals
	opIPAddress
	opArnLike // ArnEquals and ArnLike are the same test in IAM
	opNull
)

// operators maps every operator name (lower-cased) to its base test and
// whether it is the negation of that test.
var operators = map[string]struct {
	op  baseOp
	neg bool
}{
	"stringequals":              {opStringEquals, false},
	"stringnotequals":           {opStringEquals, true},
	"stringequalsignorecase":    {opStringEqualsIgnoreCase, false},
	"stringnotequalsignorecase": {opStringEqualsIgnoreCase, true},
	"stringlike":                {opStringLike, false},
	"stringnotlike":             {opStringLike, true},
	"numericequals":             {opNumericEquals, false},
	"numericnotequals":          {opNumericEquals, true},
	"numericlessthan":           {opNumericLessThan, false},
	"numericlessthanequals":     {opNumericLessThanEquals, false},
	"numericgreaterthan":        {opNumericGreaterThan, false},
	"numericgreaterthanequals":  {opNumericGreaterThanEquals, false},
	"dateequals":                {opDateEquals, false},
	"datenotequals":             {opDateEquals, true},
	"datelessthan":              {opDateLessThan, false},
	"datelessthanequals":        {opDateLessThanEquals, false},
	"dategreaterthan":           {opDateGreaterThan, false},
	"dategreaterthanequals":     {opDateGreaterThanEquals, false},
	"bool":                      {opBool, false},
	"binaryequals":              {opBinaryEquals, false},
	"ipaddress":                 {opIPAddress, false},
	"notipaddress":              {opIPAddress, true},
	"arnequals":                 {opArnLike, false},
	"arnlike":                   {opArnLike, false},
	"arnnotequals":              {opArnLike, true},
	"arnnotlike":                {opArnLike, true},
	"null":                      {opNull, false},
}

type setMode uint8

const (
	setNone setMode = iota
	setAny          // ForAnyValue:
	setAll          // ForAllValues:
)

// condition is one (operator, key) pair with its values: the values are
// OR'ed, the conditions of a statement AND'ed.
type condition struct {
	op       baseOp
	neg      bool
	set      setMode
	ifExists bool
	key      string // lower-cased
	values   []value
}

// value is a condition value, pre-parsed for its operator. If it holds
// policy variables (${...}), the typed fields are unset and the value is
// expanded and parsed per request.
type value struct {
	raw    string
	vars   bool
	num    float64
	numOK  bool
	date   time.Time
	dateOK bool
	prefix netip.Prefix
	ipOK   bool
}

func parseConditions(v json.RawMessage, vars bool) ([]condition, error) {
	var ops map[string]json.RawMessage
	if firstByte(v) != '{' || json.Unmarshal(v, &ops) != nil {
		return nil, malformed("Condition must be an object of condition operators.")
	}
	var out []condition
	for name, body := range ops {
		c := condition{}
		rest := name
		if s, ok := cutPrefixFold(rest, "ForAnyValue:"); ok {
			c.set, rest = setAny, s
		} else if s, ok := cutPrefixFold(rest, "ForAllValues:"); ok {
			c.set, rest = setAll, s
		}
		if s, ok := cutSuffixFold(rest, "IfExists"); ok {
			c.ifExists, rest = true, s
		}
		o, ok := operators[strings.ToLower(rest)]
		if !ok || (o.op == opNull && (c.ifExists || c.set != setNone)) {
			return nil, malformed("Invalid Condition type : %s.", name)
		}
		c.op, c.neg = o.op, o.neg
		var keys map[string]json.RawMessage
		if firstByte(body) != '{' || json.Unmarshal(body, &keys) != nil {
			return nil, malformed("Condition operator %s must map condition keys to values.", name)
		}
		for key, raw := range keys {
			if key == "" {
				return nil, malformed("Condition key must not be empty.")
			}
			lk := strings.ToLower(key)
			if c.set == setAll && strings.HasPrefix(lk, "kms:encryptioncontext:") {
				return nil, malformed("OverlyPermissiveCondition:EncryptionContext: Using the ForAllValues set operator with a single-valued condition key matches requests without the specified encryption context or with an unspecified encryption context. To fix, remove ForAllValues.")
			}
			vals, ok := scalarList(raw)
			if !ok {
				return nil, malformed("Condition %s %s: values must be strings, numbers or booleans, or an array of them.", name, key)
			}
			cc := c
			cc.key = lk
			cc.values = make([]value, len(vals))
			for i, s := range vals {
				cc.values[i] = compileValue(c.op, s, vars)
			}
			out = append(out, cc)
		}
	}
	return out, nil
}

func compileValue(op baseOp, s string, vars bool) value {
	v := value{raw: s, vars: vars && strings.Contains(s, "${")}
	if v.vars {
		return v
	}
	switch op {
	case opNumericEquals, opNumericLessThan, opNumericLessThanEquals, opNumericGreaterThan, opNumericGreaterThanEquals:
		v.num, v.numOK = parseNumber(s)
	case opDateEquals, opDateLessThan, opDateLessThanEquals, opDateGreaterThan, opDateGreaterThanEquals:
		v.date, v.dateOK = parseDate(s)
	case opIPAddress:
		v.prefix, v.ipOK = parsePrefix(s)
	}
	return v
}

// eval reports whether the condition holds for the request context.
func (c *condition) eval(ctx map[string][]string) bool {
	got := ctx[c.key]
	if c.op == opNull {
		// "Null": true  -> the key is absent; false -> the key is present.
		absent := len(got) == 0
		for i := range c.values {
			if b, ok := parseBool(c.values[i].raw); ok && b == absent {
				return true
			}
		}
		return false
	}
	if len(got) == 0 {
		switch {
		case c.ifExists:
			return true
		case c.set == setAll:
			return true // vacuously: every one of no values matches
		case c.set == setAny:
			return false
		}
		return c.neg // a negated test holds when the key is absent
	}
	// one reports whether the request value s passes the operator
	// (including its negation): for a positive operator, s matches some
	// policy value; for a negated one, s matches none.
	one := func(s string) bool {
		for i := range c.values {
			if matchValue(c.op, &c.values[i], s, ctx) {
				return !c.neg
			}
		}
		return c.neg
	}
	switch c.set {
	case setAll:
		for _, s := range got {
			if !one(s) {
				return false
			}
		}
		return true
	case setAny:
		for _, s := range got {
			if one(s) {
				return true
			}
		}
		return false
	}
	// Without a set operator: a positive test holds if any request value
	// matches; a negated one if no request value matches.
	if c.neg {
		for _, s := range got {
			if !one(s) {
				return false
			}
		}
		return true
	}
	for _, s := range got {
		if one(s) {
			return true
		}
	}
	return false
}

// matchValue is the positive base test of one policy value against one
// request value.
func matchValue(op baseOp, v *value, s string, ctx map[string][]string) bool {
	pv := *v
	if pv.vars {
		exp, ok := expand(pv.raw, ctx, op == opStringLike || op == opArnLike)
		if !ok {
			return false
		}
		pv = compileValue(op, exp, false)
	}
	switch op {
	case opStringEquals, opBinaryEquals:
		return pv.raw == s
	case opStringEqualsIgnoreCase:
		return strings.EqualFold(pv.raw, s)
	case opStringLike:
		return globMatch(pv.raw, s, false)
	case opArnLike:
		return arnLike(pv.raw, s)
	case opBool:
		a, ok1 := parseBool(pv.raw)
		b, ok2 := parseBool(s)
		return ok1 && ok2 && a == b
	case opIPAddress:
		if !pv.ipOK {
			return false
		}
		addr, err := netip.ParseAddr(s)
		if err != nil {
			p, ok := parsePrefix(s) // a request value given as a /32 or /128
			if !ok || p.Bits() != p.Addr().BitLen() {
				return false
			}
			addr = p.Addr()
		}
		return pv.prefix.Contains(addr.Unmap())
	case opNumericEquals, opNumericLessThan, opNumericLessThanEquals, opNumericGreaterThan, opNumericGreaterThanEquals:
		if !pv.numOK {
			return false
		}
		n, ok := parseNumber(s)
		if !ok {
			return false
		}
		switch op {
		case opNumericEquals:
			return n == pv.num
		case opNumericLessThan:
			return n < pv.num
		case opNumericLessThanEquals:
			return n <= pv.num
		case opNumericGreaterThan:
			return n > pv.num
		default:
			return n >= pv.num
		}
	case opDateEquals, opDateLessThan, opDateLessThanEquals, opDateGreaterThan, opDateGreaterThanEquals:
		if !pv.dateOK {
			return false
		}
		t, ok := parseDate(s)
		if !ok {
			return false
		}
		switch op {
		case opDateEquals:
			return t.Equal(pv.date)
		case opDateLessThan:
			return t.Before(pv.date)
		case opDateLessThanEquals:
			return !t.After(pv.date)
		case opDateGreaterThan:
			return t.After(pv.date)
		default:
			return !t.Before(pv.date)
		}
	}
	return false
}

func parseBool(s string) (bool, bool) {
	switch {
	case strings.EqualFold(s, "true"):
		return true, true
	case strings.EqualFold(s, "false"):
		return false, true
	}
	return false, false
}

func parseNumber(s string) (float64, bool) {
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
		return 0, false
	}
	return f, true
}

// dateLayouts are the ISO 8601 forms IAM accepts, most specific first.
var dateLayouts = []string{
	time.RFC3339Nano,
	"2006-01-02T15:04:05Z0700",
	"2006-01-02T15:04Z07:00",
	"2006-01-02T15:04Z",
	"2006-01-02T15:04:05",
	"2006-01-02",
}

// parseDate accepts ISO 8601 dates and times and epoch seconds.
func parseDate(s string) (time.Time, bool) {
	if s == "" {
		return time.Time{}, false
	}
	if s[0] >= '0' && s[0] <= '9' && !strings.ContainsAny(s, "-:T") {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n > 1<<40 {
			return time.Time{}, false
		}
		return time.Unix(n, 0).UTC(), true
	}
	for _, l := range dateLayouts {
		if t, err := time.Parse(l, s); err == nil {
			return t, true
		}
	}
	return time.Time{}, false
}

// parsePrefix accepts a CIDR block or a single address (as /32 or /128).
func parsePrefix(s string) (netip.Prefix, bool) {
	if p, err := netip.ParsePrefix(s); err == nil {
		if p.Addr().Is4In6() && p.Bits() >= 96 {
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		}
		return p.Masked(), true
	}
	if a, err := netip.ParseAddr(s); err == nil && a.Zone() == "" {
		a = a.Unmap()
		return netip.PrefixFrom(a, a.BitLen()), true
	}
	return netip.Prefix{}, false
}

func cutPrefixFold(s, prefix string) (string, bool) {
	if len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix) {
		return s[len(prefix):], true
	}
	return s, false
}

func cutSuffixFold(s, suffix string) (string, bool) {
	if len(s) > len(suffix) && strings.EqualFold(s[len(s)-len(suffix):], suffix) {
		return s[:len(s)-len(suffix)], true
	}
	return s, false
}
