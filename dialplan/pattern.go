package dialplan

import (
	"errors"
	"fmt"
)

// pattern is a compiled Asterisk extension pattern restricted to digits:
// one digit set per position plus an optional wildcard tail.
type pattern struct {
	src   string
	sets  []digitSet
	tail  byte // 0, '.' (one or more digits) or '!' (zero or more)
	exact string
}

// digitSet has bit d set when digit d is allowed.
type digitSet uint16

const maxPatternLen = 64

// compilePattern accepts "600" (a literal extension) or "_" followed by
// X (0-9), Z (1-9), N (2-9), digits, [..] sets with ranges such as [1-5] or
// [135-7], and an optional trailing '.' or '!'.
func compilePattern(src string) (pattern, error) {
	p := pattern{src: src}
	if src == "" {
		return p, errors.New("empty pattern")
	}
	if len(src) > maxPatternLen {
		return p, fmt.Errorf("pattern longer than %d characters", maxPatternLen)
	}
	if src[0] != '_' {
		for i := 0; i < len(src); i++ {
			if src[i] < '0' || src[i] > '9' {
				return p, fmt.Errorf("literal extension may only hold digits, found %q at %d; patterns start with '_'", src[i], i)
			}
		}
		p.exact = src
		return p, nil
	}
	body := src[1:]
	for i := 0; i < len(body); i++ {
		c := body[i]
		switch {
		case c >= '0' && c <= '9':
			p.sets = append(p.sets, 1<<(c-'0'))
		case c == 'X':
			p.sets = append(p.sets, rangeSet('0', '9'))
		case c == 'Z':
			p.sets = append(p.sets, rangeSet('1', '9'))
		case c == 'N':
			p.sets = append(p.sets, rangeSet('2', '9'))
		case c == '[':
			end := i + 1
			for end < len(body) && body[end] != ']' {
				end++
			}
			if end == len(body) {
				return p, fmt.Errorf("'[' at %d is never closed", i+1)
			}
			set, err := parseSet(body[i+1 : end])
			if err != nil {
				return p, fmt.Errorf("set at %d: %w", i+1, err)
			}
			p.sets = append(p.sets, set)
			i = end
		case c == '.' || c == '!':
			if i != len(body)-1 {
				return p, fmt.Errorf("%q at %d must be the last character", c, i+1)
			}
			p.tail = c
		case c == 'x' || c == 'z' || c == 'n':
			return p, fmt.Errorf("lowercase %q at %d; write it in upper case", c, i+1)
		default:
			return p, fmt.Errorf("unsupported character %q at %d; use digits, X, Z, N, [a-b] and a trailing . or !", c, i+1)
		}
	}
	if len(p.sets) == 0 {
		// "_." or "_!" would swallow every number, PSTN included.
		return p, errors.New("pattern matches any number; give at least one position before the wildcard")
	}
	return p, nil
}

func rangeSet(lo, hi byte) digitSet {
	var s digitSet
	for c := lo; c <= hi; c++ {
		s |= 1 << (c - '0')
	}
	return s
}

// parseSet reads the inside of [...]: digits and ranges like 1-5.
func parseSet(in string) (digitSet, error) {
	if in == "" {
		return 0, errors.New("empty []")
	}
	var s digitSet
	for i := 0; i < len(in); i++ {
		c := in[i]
		if c < '0' || c > '9' {
			return 0, fmt.Errorf("%q is not a digit", c)
		}
		if i+2 < len(in) && in[i+1] == '-' {
			hi := in[i+2]
			if hi < '0' || hi > '9' || hi < c {
				return 0, fmt.Errorf("bad range %q", in[i:i+3])
			}
			s |= rangeSet(c, hi)
			i += 2
			continue
		}
		s |= 1 << (c - '0')
	}
	return s, nil
}

// match reports whether the all-digit string s matches p.
func (p pattern) match(s string) bool {
	if p.exact != "" {
		return s == p.exact
	}
	switch p.tail {
	case 0:
		if len(s) != len(p.sets) {
			return false
		}
	case '.':
		if len(s) <= len(p.sets) {
			return false
		}
	case '!':
		if len(s) < len(p.sets) {
			return false
		}
	}
	for i, set := range p.sets {
		c := s[i]
		if c < '0' || c > '9' || set&(1<<(c-'0')) == 0 {
			return false
		}
	}
	for i := len(p.sets); i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// Patterns is a compiled list of extension patterns ("_1XX", "600"), for choices outside the router (e.g. how
// call control reaches an extension).
type Patterns []pattern

// CompilePatterns compiles srcs; the error names the first bad one.
func CompilePatterns(srcs []string) (Patterns, error) {
	out := make(Patterns, 0, len(srcs))
	for _, s := range srcs {
		p, err := compilePattern(s)
		if err != nil {
			return nil, fmt.Errorf("pattern %q: %w", s, err)
		}
		out = append(out, p)
	}
	return out, nil
}

// Match reports whether number matches one of the patterns.
func (ps Patterns) Match(number string) bool {
	for _, p := range ps {
		if p.match(number) {
			return true
		}
	}
	return false
}
