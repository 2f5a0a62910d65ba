package dialplan

import (
	"errors"
	"strings"
	"testing"

	"github.com/patchbay/patchbay/wire"
)

func defaultRouter(t testing.TB) *Router {
	t.Helper()
	r, err := NewRouter(DefaultRules())
	if err != nil {
		t.Fatalf("NewRouter(DefaultRules()): %v", err)
	}
	return r
}

func TestRouteAccepts(t *testing.T) {
	r := defaultRouter(t)
	tests := []struct {
		in   string
		want Decision
	}{
		{"100", Decision{Kind: KindExtension, Number: "100", Endpoint: "Local/100@from-patchbay"}},
		{" 199 ", Decision{Kind: KindExtension, Number: "199", Endpoint: "Local/199@from-patchbay"}},
		{"600", Decision{Kind: KindExtension, Number: "600", Endpoint: "Local/600@from-patchbay"}},
		{"603", Decision{Kind: KindExtension, Number: "603", Endpoint: "Local/603@from-patchbay"}},
		{"7001", Decision{Kind: KindUser, Number: "7001"}},
		{"alice", Decision{Kind: KindUser, Number: "alice"}},
		{"bob.smith-2_x", Decision{Kind: KindUser, Number: "bob.smith-2_x"}},
		{"8123", Decision{Kind: KindRoom, Number: "8123"}},
		{"+44 20 7946 0000", Decision{Kind: KindPSTN, Number: "+442079460000", Trunk: "pstn", Endpoint: "Local/+442079460000@from-patchbay"}},
		{"+1 (416) 555-1212", Decision{Kind: KindPSTN, Number: "+14165551212", Trunk: "pstn", Endpoint: "Local/+14165551212@from-patchbay"}},
		{"+44 (0)20 7946 0000", Decision{Kind: KindPSTN, Number: "+442079460000", Trunk: "pstn", Endpoint: "Local/+442079460000@from-patchbay"}},
		{"0044.20.7946.0000", Decision{Kind: KindPSTN, Number: "+442079460000", Trunk: "pstn", Endpoint: "Local/+442079460000@from-patchbay"}},
	}
	for _, tt := range tests {
		got, err := r.Route(tt.in)
		if err != nil {
			t.Errorf("Route(%q): %v", tt.in, err)
			continue
		}
		if got != tt.want {
			t.Errorf("Route(%q) = %+v, want %+v", tt.in, got, tt.want)
		}
	}
}

func TestRouteRefuses(t *testing.T) {
	r := defaultRouter(t)
	tests := []struct {
		name, in, code string
	}{
		{"dial string injection", "100&PJSIP/trunk/900", wire.CodeInvalidNumber},
		{"asterisk bestpractices example", "500&SIP/itsp/14165551212", wire.CodeInvalidNumber},
		{"context injection", "600@internal", wire.CodeInvalidNumber},
		{"variable expansion", "${EXTEN}", wire.CodeInvalidNumber},
		{"function", "100,1", wire.CodeInvalidNumber},
		{"semicolon", "100;x", wire.CodeInvalidNumber},
		{"slash", "100/200", wire.CodeInvalidNumber},
		{"braces", "{100}", wire.CodeInvalidNumber},
		{"newline", "\n", wire.CodeInvalidNumber},
		{"trailing newline", "100\n", wire.CodeInvalidNumber},
		{"tab", "100\t", wire.CodeInvalidNumber},
		{"NUL", "100\x00", wire.CodeInvalidNumber},
		{"arabic-indic digits", "١٠٠", wire.CodeInvalidNumber},
		{"fullwidth digits", "１００", wire.CodeInvalidNumber},
		{"invalid utf8", "\xff100", wire.CodeInvalidNumber},
		{"empty", "", wire.CodeInvalidNumber},
		{"spaces only", "   ", wire.CodeInvalidNumber},
		{"200 chars", strings.Repeat("1", 200), wire.CodeInvalidNumber},
		{"star", "*97", wire.CodeInvalidNumber},
		{"hash", "100#", wire.CodeInvalidNumber},
		{"letter in number", "10O", wire.CodeInvalidNumber},
		{"uppercase name", "Alice", wire.CodeInvalidNumber},
		{"name with @", "alice@example", wire.CodeInvalidNumber},
		{"name too long", "a" + strings.Repeat("b", 32), wire.CodeInvalidNumber},
		{"plus in middle", "44+20", wire.CodeInvalidNumber},
		{"unknown short number", "555", wire.CodeInvalidNumber},
		{"E.164 too short", "+4412", wire.CodeInvalidNumber},
		{"E.164 too long", "+1234567890123456", wire.CodeInvalidNumber},
		{"country code 0", "+0123456789", wire.CodeInvalidNumber},
		{"only plus", "+", wire.CodeInvalidNumber},
		{"US premium", "+1 900 555 0100", wire.CodeForbiddenDestination},
		{"US 976", "+19765550100", wire.CodeForbiddenDestination},
		{"UK premium via 00", "00449098790000", wire.CodeForbiddenDestination},
		{"UK 087", "+448712345678", wire.CodeForbiddenDestination},
		{"satellite", "+870123456789", wire.CodeForbiddenDestination},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := r.Route(tt.in)
			if err == nil {
				t.Fatalf("accepted as %+v", d)
			}
			var re *RouteError
			if !errors.As(err, &re) {
				t.Fatalf("error %T %v is not a *RouteError", err, err)
			}
			if re.Code != tt.code {
				t.Errorf("code %q, want %q (%v)", re.Code, tt.code, err)
			}
			if d != (Decision{}) {
				t.Errorf("non-zero decision with error: %+v", d)
			}
			if len(re.Input) > maxQuotedInput*4+32 || strings.ContainsAny(err.Error(), "\n\x00") {
				t.Errorf("error echoes input unsafely: %q", err.Error())
			}
			sentinel := ErrInvalidNumber
			if tt.code == wire.CodeForbiddenDestination {
				sentinel = ErrForbiddenDestination
			}
			if !errors.Is(err, sentinel) {
				t.Errorf("errors.Is(%v, %v) = false", err, sentinel)
			}
		})
	}
}

func TestRouteNationalAndTrunks(t *testing.T) {
	rules := DefaultRules()
	rules.PSTN.NationalPrefix = "0"
	rules.PSTN.CountryCode = "44"
	rules.PSTN.InternationalPrefixes = []string{"00", "011"}
	rules.PSTN.Allow = []string{"+44", "+1"}
	rules.PSTN.Trunks = map[string]string{"+": "default", "+44": "uk", "+4420": "london"}
	r, err := NewRouter(rules)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		in, number, trunk, code string
	}{
		{"020 7946 0000", "+442079460000", "london", ""},
		{"0161 496 0000", "+441614960000", "uk", ""},
		{"011 1 416 555 1212", "+14165551212", "default", ""},
		{"+33 1 23 45 67 89", "", "", wire.CodeForbiddenDestination}, // not allowed
		{"09098790000", "", "", wire.CodeForbiddenDestination},       // +449 denied
	}
	for _, tt := range tests {
		d, err := r.Route(tt.in)
		if tt.code != "" {
			var re *RouteError
			if !errors.As(err, &re) || re.Code != tt.code {
				t.Errorf("Route(%q) = %+v, %v; want code %s", tt.in, d, err, tt.code)
			}
			continue
		}
		if err != nil || d.Number != tt.number || d.Trunk != tt.trunk || d.Kind != KindPSTN {
			t.Errorf("Route(%q) = %+v, %v; want %s via %s", tt.in, d, err, tt.number, tt.trunk)
		}
	}
}

func TestNewRouterNamesBadRule(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*Rules)
		want   string
	}{
		{"bad pattern char", func(r *Rules) { r.Extensions = []string{"_1XX", "_1Q"} }, "Extensions[1]"},
		{"wildcard mid", func(r *Rules) { r.Rooms = []string{"_8.X"} }, "Rooms[0]"},
		{"catch-all", func(r *Rules) { r.UserNumbers = []string{"_."} }, "UserNumbers[0]"},
		{"unclosed set", func(r *Rules) { r.Extensions = []string{"_1[2-"} }, "Extensions[0]"},
		{"reversed range", func(r *Rules) { r.Extensions = []string{"_1[5-2]"} }, "Extensions[0]"},
		{"literal with letters", func(r *Rules) { r.Extensions = []string{"6a0"} }, "Extensions[0]"},
		{"unanchored user pattern", func(r *Rules) { r.UserName = "[a-z]+" }, "UserName"},
		{"bad regexp", func(r *Rules) { r.UserName = "^[a-$" }, "UserName"},
		{"deny without +", func(r *Rules) { r.PSTN.Deny = []string{"1900"} }, "PSTN.Deny[0]"},
		{"allow with junk", func(r *Rules) { r.PSTN.Allow = []string{"+44&"} }, "PSTN.Allow[0]"},
		{"trunk name injection", func(r *Rules) { r.PSTN.Trunks = map[string]string{"+": "a/b"} }, "PSTN.Trunks"},
		{"no trunk", func(r *Rules) { r.PSTN.Trunks = nil }, "PSTN.Trunks"},
		{"intl prefix letters", func(r *Rules) { r.PSTN.InternationalPrefixes = []string{"0o"} }, "PSTN.InternationalPrefixes[0]"},
		{"national without country", func(r *Rules) { r.PSTN.NationalPrefix = "0" }, "PSTN.NationalPrefix"},
		{"max length", func(r *Rules) { r.MaxLength = 0 }, "MaxLength"},
		{"context", func(r *Rules) { r.Context = "from patchbay" }, "Context"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rules := DefaultRules()
			tt.mutate(&rules)
			_, err := NewRouter(rules)
			if err == nil {
				t.Fatal("accepted")
			}
			if !strings.Contains(err.Error(), "rules."+tt.want) {
				t.Errorf("error %q does not name rules.%s", err, tt.want)
			}
		})
	}
}

func TestPatternMatch(t *testing.T) {
	tests := []struct {
		pat string
		yes []string
		no  []string
	}{
		{"_1XX", []string{"100", "199"}, []string{"10", "1000", "200"}},
		{"600", []string{"600"}, []string{"6000", "60"}},
		{"_NXX", []string{"200", "999"}, []string{"100", "099"}},
		{"_Z", []string{"1", "9"}, []string{"0", "10"}},
		{"_7[1-35]X", []string{"710", "735", "725"}, []string{"740", "760"}},
		{"_9.", []string{"91", "9123"}, []string{"9"}},
		{"_9!", []string{"9", "9123"}, []string{"8"}},
	}
	for _, tt := range tests {
		p, err := compilePattern(tt.pat)
		if err != nil {
			t.Fatalf("compile %q: %v", tt.pat, err)
		}
		for _, s := range tt.yes {
			if !p.match(s) {
				t.Errorf("%q should match %q", tt.pat, s)
			}
		}
		for _, s := range tt.no {
			if p.match(s) {
				t.Errorf("%q should not match %q", tt.pat, s)
			}
		}
	}
}

func TestAllowed(t *testing.T) {
	ext := Decision{Kind: KindExtension, Number: "100"}
	user := Decision{Kind: KindUser, Number: "room"}
	pstn := Decision{Kind: KindPSTN, Number: "+442079460000"}
	tests := []struct {
		d      Decision
		grants []string
		want   bool
	}{
		{ext, []string{"ext"}, true},
		{ext, []string{"100"}, true},
		{ext, []string{"101", "user"}, false},
		{ext, []string{"*"}, true},
		{ext, nil, false},
		{user, []string{"room"}, false}, // keyword, not the user "room"
		{user, []string{"user"}, true},
		{pstn, []string{"ext", "user", "room"}, false},
		{pstn, []string{"pstn"}, true},
		{pstn, []string{"+442079460000"}, true},
		{Decision{}, []string{"*"}, false},
	}
	for _, tt := range tests {
		if got := Allowed(tt.d, tt.grants); got != tt.want {
			t.Errorf("Allowed(%+v, %q) = %v, want %v", tt.d, tt.grants, got, tt.want)
		}
	}
}

func FuzzRoute(f *testing.F) {
	for _, s := range []string{"100", "600", "7001", "8123", "alice", "+442079460000", "0044 20 7946 0000",
		"100&PJSIP/trunk/900", "600@internal", "${EXTEN}", "\n", "١٠٠", "+19005550100", "", strings.Repeat("9", 200)} {
		f.Add(s)
	}
	r := defaultRouter(f)
	f.Fuzz(func(t *testing.T, in string) {
		d, err := r.Route(in)
		if err != nil {
			var re *RouteError
			if !errors.As(err, &re) || (re.Code != wire.CodeInvalidNumber && re.Code != wire.CodeForbiddenDestination) {
				t.Fatalf("Route(%q): untyped error %v", in, err)
			}
			if d != (Decision{}) {
				t.Fatalf("Route(%q): decision %+v returned with error", in, d)
			}
			return
		}
		checkDecision(t, in, d)
	})
}

func checkDecision(t *testing.T, in string, d Decision) {
	t.Helper()
	if d.Number == "" {
		t.Fatalf("Route(%q): empty number", in)
	}
	switch d.Kind {
	case KindUser:
		if d.Number[0] >= 'a' && d.Number[0] <= 'z' {
			if !safeName(d.Number) {
				t.Fatalf("Route(%q): unsafe user name %q", in, d.Number)
			}
		} else if !onlyDigits(d.Number) {
			t.Fatalf("Route(%q): unsafe user number %q", in, d.Number)
		}
		if d.Endpoint != "" || d.Trunk != "" {
			t.Fatalf("Route(%q): user decision with endpoint/trunk %+v", in, d)
		}
	case KindRoom:
		if !onlyDigits(d.Number) || d.Endpoint != "" || d.Trunk != "" {
			t.Fatalf("Route(%q): bad room decision %+v", in, d)
		}
	case KindExtension:
		if !onlyDigits(d.Number) || d.Trunk != "" {
			t.Fatalf("Route(%q): bad extension decision %+v", in, d)
		}
	case KindPSTN:
		if d.Number[0] != '+' || !onlyDigits(d.Number[1:]) || len(d.Number) < 9 || len(d.Number) > 16 || d.Trunk == "" {
			t.Fatalf("Route(%q): bad PSTN decision %+v", in, d)
		}
	default:
		t.Fatalf("Route(%q): unknown kind %q", in, d.Kind)
	}
	if d.Kind == KindExtension || d.Kind == KindPSTN {
		if want := "Local/" + d.Number + "@from-patchbay"; d.Endpoint != want {
			t.Fatalf("Route(%q): endpoint %q, want %q", in, d.Endpoint, want)
		}
	}
}

func onlyDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
