package dialplan

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

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
	pstn := func(num string, class Class, country string) Decision {
		return Decision{Kind: KindPSTN, Number: num, E164: num, Class: class, Country: country, Trunk: "pstn",
			Trunks: []string{"pstn"}, Route: "no route matched: every trunk in order", Endpoint: "Local/" + num + "@from-patchbay"}
	}
	tests := []struct {
		in   string
		want Decision
	}{
		{"100", Decision{Kind: KindExtension, Number: "100", Endpoint: "Local/100@from-patchbay"}},
		{" 199 ", Decision{Kind: KindExtension, Number: "199", Endpoint: "Local/199@from-patchbay"}},
		{"600", Decision{Kind: KindExtension, Number: "600", Endpoint: "Local/600@from-patchbay"}},
		{"604", Decision{Kind: KindExtension, Number: "604", Endpoint: "Local/604@from-patchbay"}},
		{"１００", Decision{Kind: KindExtension, Number: "100", Endpoint: "Local/100@from-patchbay"}},
		{"7001", Decision{Kind: KindUser, Number: "7001"}},
		{"alice", Decision{Kind: KindUser, Number: "alice"}},
		{"bob.smith-2_x", Decision{Kind: KindUser, Number: "bob.smith-2_x"}},
		{"8123", Decision{Kind: KindRoom, Number: "8123"}},
		{"+44 20 7946 0000", pstn("+442079460000", ClassFixedLine, "GB")},
		{"+1 (416) 555-1212", pstn("+14165551212", ClassFixedLineOrMobile, "CA")},
		{"+44 (0)20 7946 0000", pstn("+442079460000", ClassFixedLine, "GB")},
		{"0044.20.7946.0000", pstn("+442079460000", ClassFixedLine, "GB")},
	}
	for _, tt := range tests {
		got, err := r.Route(tt.in)
		if err != nil {
			t.Errorf("Route(%q): %v", tt.in, err)
			continue
		}
		if !reflect.DeepEqual(got, tt.want) {
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
		{"devanagari digits", "१००", wire.CodeInvalidNumber},
		{"greek letter", "10ο", wire.CodeInvalidNumber},
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
		{"E.164 too short", "+44123", wire.CodeInvalidNumber},
		{"E.164 too long", "+1234567890123456", wire.CodeInvalidNumber},
		{"country code 0", "+0123456789", wire.CodeInvalidNumber},
		{"tel without number", "tel:", wire.CodeInvalidNumber},
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
			if !reflect.DeepEqual(d, Decision{}) {
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
		{"trunk name injection", func(r *Rules) { r.PSTN.Trunks = []Trunk{{Name: "a/b"}} }, "PSTN.Trunks[0].Name"},
		{"no trunk", func(r *Rules) { r.PSTN.Trunks = nil }, "PSTN.Trunks"},
		{"duplicate trunk", func(r *Rules) { r.PSTN.Trunks = []Trunk{{Name: "a"}, {Name: "a"}} }, "PSTN.Trunks[1].Name"},
		{"negative channels", func(r *Rules) { r.PSTN.Trunks[0].MaxChannels = -1 }, "PSTN.Trunks[0].MaxChannels"},
		{"bad dial format", func(r *Rules) { r.PSTN.Trunks[0].DialFormat = "intl" }, "PSTN.Trunks[0].DialFormat"},
		{"bad default caller ID", func(r *Rules) { r.PSTN.Trunks[0].DefaultCallerID = "0207" }, "PSTN.Trunks[0].DefaultCallerID"},
		{"legacy prefix to unknown trunk", func(r *Rules) { r.PSTN.PrefixTrunks = map[string]string{"+44": "uk"} }, "PSTN.PrefixTrunks"},
		{"route to unknown trunk", func(r *Rules) { r.PSTN.Routes = []Route{{Countries: []string{"GB"}, Trunks: []string{"pstn", "uk"}}} }, "PSTN.Routes[0].Trunks[1]"},
		{"route without trunks", func(r *Rules) { r.PSTN.Routes = []Route{{Countries: []string{"GB"}}} }, "PSTN.Routes[0].Trunks"},
		{"route bad country", func(r *Rules) { r.PSTN.Routes = []Route{{Countries: []string{"UK"}, Trunks: []string{"pstn"}}} }, "PSTN.Routes[0].Countries[0]"},
		{"route bad class", func(r *Rules) { r.PSTN.Routes = []Route{{Classes: []Class{"CHEAP"}, Trunks: []string{"pstn"}}} }, "PSTN.Routes[0].Classes[0]"},
		{"bad region", func(r *Rules) { r.PSTN.DefaultRegion = "XX" }, "PSTN.DefaultRegion"},
		{"bad allowed country", func(r *Rules) { r.PSTN.AllowCountries = []string{"GB", "EU"} }, "PSTN.AllowCountries[1]"},
		{"bad deny class", func(r *Rules) { r.PSTN.DenyClasses = []Class{"PREMIUM"} }, "PSTN.DenyClasses[0]"},
		{"whole-country allow prefix", func(r *Rules) { r.PSTN.AllowPrefixes = []string{"+44"} }, "PSTN.AllowPrefixes[0]"},
		{"exit code that is an area code", func(r *Rules) { r.PSTN.DefaultRegion = "GB"; r.PSTN.InternationalPrefixes = []string{"00", "011"} }, "PSTN.InternationalPrefixes"},
		{"national prefix of another country", func(r *Rules) { r.PSTN.NationalPrefix = "1"; r.PSTN.CountryCode = "44" }, "PSTN.NationalPrefix"},
		{"bad failover cause", func(r *Rules) { r.PSTN.FailoverCauses = []string{"503", "FAILED"} }, "PSTN.FailoverCauses[1]"},
		{"negative failover timeout", func(r *Rules) { r.PSTN.FailoverTimeout = -time.Second }, "PSTN.FailoverTimeout"},
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
