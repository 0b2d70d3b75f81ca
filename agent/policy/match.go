package policy

import (
	"strings"
	"unicode/utf8"
)

// esc marks the next byte of a pattern as a literal, so that a '*' or '?'
// that came from a policy variable (${*}, or a request value substituted
// into a StringLike pattern) is not a wildcard. Policy documents cannot
// contain NUL (checkWire), so esc never appears in a written pattern.
const esc = 0

// globMatch reports whether s matches pattern p, where '*' matches any run
// of characters (also none) and '?' exactly one. fold compares ASCII
// letters case-insensitively; p must then be lower-case.
func globMatch(p, s string, fold bool) bool {
	px, sx := 0, 0
	starP, starS := -1, 0
	for sx < len(s) {
		if px < len(p) {
			switch c := p[px]; c {
			case '*':
				starP, starS = px, sx
				px++
				continue
			case '?':
				_, n := utf8.DecodeRuneInString(s[sx:])
				px, sx = px+1, sx+n
				continue
			default:
				w := 1
				if c == esc && px+1 < len(p) {
					c, w = p[px+1], 2
				}
				b := s[sx]
				if fold && b >= 'A' && b <= 'Z' {
					b += 'a' - 'A'
				}
				if c == b {
					px, sx = px+w, sx+1
					continue
				}
			}
		}
		if starP < 0 {
			return false
		}
		_, n := utf8.DecodeRuneInString(s[starS:])
		starS += n
		px, sx = starP+1, starS
	}
	for px < len(p) && p[px] == '*' {
		px++
	}
	return px == len(p)
}

// arnLike is IAM's ArnEquals/ArnLike: both ARNs are split into their six
// colon-separated parts (the last may hold colons) and each part is
// matched separately, case-sensitively, with * and ? wildcards.
func arnLike(p, s string) bool {
	if p == "*" {
		return true
	}
	pp, ok1 := splitSix(p)
	sp, ok2 := splitSix(s)
	if !ok1 || !ok2 {
		return false
	}
	for i := range pp {
		if !globMatch(pp[i], sp[i], false) {
			return false
		}
	}
	return true
}

// splitSix splits an ARN (or ARN pattern, skipping escaped bytes) at its
// first five colons.
func splitSix(s string) ([6]string, bool) {
	var out [6]string
	start, n := 0, 0
	for i := 0; i < len(s) && n < 5; i++ {
		switch s[i] {
		case esc:
			i++
		case ':':
			out[n] = s[start:i]
			n++
			start = i + 1
		}
	}
	if n < 5 {
		return out, false
	}
	out[5] = s[start:]
	return out, true
}

// expand substitutes IAM policy variables in a 2012-10-17 policy value:
// ${key} is the request's single value for that condition key, ${key,
// 'default'} falls back to default, and ${*}, ${?}, ${$} are the literal
// characters. ok is false when a variable has no value (and no default):
// the value then matches nothing, as in IAM. If glob, substituted text is
// escaped so that it is matched literally.
func expand(s string, ctx map[string][]string, glob bool) (string, bool) {
	var b strings.Builder
	for {
		i := strings.Index(s, "${")
		if i < 0 {
			b.WriteString(s)
			return b.String(), true
		}
		j := strings.IndexByte(s[i:], '}')
		if j < 0 {
			b.WriteString(s)
			return b.String(), true
		}
		b.WriteString(s[:i])
		inner := strings.TrimSpace(s[i+2 : i+j])
		s = s[i+j+1:]
		var sub string
		switch inner {
		case "*", "?", "$":
			sub = inner
		default:
			key, def, hasDef := strings.Cut(inner, ",")
			key = strings.ToLower(strings.TrimSpace(key))
			if hasDef {
				def = strings.TrimSpace(def)
				if len(def) < 2 || def[0] != '\'' || def[len(def)-1] != '\'' {
					return "", false
				}
				def = def[1 : len(def)-1]
			}
			if vals := ctx[key]; len(vals) == 1 {
				sub = vals[0]
			} else if hasDef {
				sub = def
			} else {
				return "", false
			}
		}
		if !glob {
			b.WriteString(sub)
			continue
		}
		for k := 0; k < len(sub); k++ {
			if c := sub[k]; c == '*' || c == '?' || c == esc {
				b.WriteByte(esc)
			}
			b.WriteByte(sub[k])
		}
	}
}

func hasVars(list []string) bool {
	for _, s := range list {
		if strings.Contains(s, "${") {
			return true
		}
	}
	return false
}
