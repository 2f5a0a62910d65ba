package dialplan

import (
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/patchbay/patchbay/dialplan/dialplantest"
	"github.com/patchbay/patchbay/wire"
)

func TestTrickyNumbers(t *testing.T) {
	if len(dialplantest.TrickyNumbers) < 40 {
		t.Fatalf("only %d tricky numbers; keep at least 40", len(dialplantest.TrickyNumbers))
	}
	r := defaultRouter(t)
	for _, tc := range dialplantest.TrickyNumbers {
		t.Run(tc.Name, func(t *testing.T) {
			d, err := r.Route(tc.In)
			if tc.Code == "" {
				if err != nil {
					t.Fatalf("Route(%q): %v", tc.In, err)
				}
				if d.Kind != KindPSTN || d.E164 != tc.E164 || d.Number != tc.E164 || d.Class != Class(tc.Class) || d.Country != tc.Country {
					t.Errorf("Route(%q) = %+v, want %s %s %s", tc.In, d, tc.E164, tc.Class, tc.Country)
				}
				if d.Trunk != "pstn" || !slices.Equal(d.Trunks, []string{"pstn"}) {
					t.Errorf("Route(%q): trunks %q / %q", tc.In, d.Trunk, d.Trunks)
				}
				return
			}
			var re *RouteError
			if !errors.As(err, &re) {
				t.Fatalf("Route(%q) = %+v, %v; want a %s refusal", tc.In, d, err, tc.Code)
			}
			if re.Code != tc.Code || re.E164 != tc.E164 || re.Class != Class(tc.Class) || re.Country != tc.Country {
				t.Errorf("Route(%q) refused with %s (%s, %s, %s): %s; want %s (%s, %s, %s)", tc.In, re.Code, re.E164, re.Class, re.Country, re.Reason, tc.Code, tc.E164, tc.Class, tc.Country)
			}
			if !reflect.DeepEqual(d, Decision{}) {
				t.Errorf("Route(%q): decision %+v with an error", tc.In, d)
			}
		})
	}
}

func TestRefusalNamesTheClass(t *testing.T) {
	r := defaultRouter(t)
	for in, want := range map[string]string{
		"+4409065551234": "premium-rate numbers are not allowed",
		"+447012345678":  "personal numbers are not allowed",
		"+491371234567":  "shared-cost numbers are not allowed",
		"+19765550100":   "numbers that are not valid in their country's numbering plan are not allowed",
		"+870123456789":  "numbers starting +870 are blocked (dialplan.pstn.deny)",
	} {
		_, err := r.Route(in)
		var re *RouteError
		if !errors.As(err, &re) || re.Message() != want || !errors.Is(err, ErrForbiddenDestination) {
			t.Errorf("Route(%q): %v; want the message %q", in, err, want)
		}
	}
}

func TestDefaultRegionReadsNationalNumbers(t *testing.T) {
	rules := DefaultRules()
	rules.PSTN.DefaultRegion = "GB"
	r, err := NewRouter(rules)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ in, e164, code string }{
		{"020 7946 0000", "+442079460000", ""},
		{"(020) 7946-0000", "+442079460000", ""},
		{"0114 496 0000", "+441144960000", ""}, // Sheffield: 011 is no exit code in GB
		{"00 33 1 23 45 67 89", "+33123456789", ""},
		{"00 1 415 555 0100", "+14155550100", ""},
		{"09065551234", "+449065551234", wire.CodeForbiddenDestination},
		{"07012345678", "+447012345678", wire.CodeForbiddenDestination},
		{"0044 906 555 1234", "+449065551234", wire.CodeForbiddenDestination},
		{"100", "", ""}, // extensions still win
		{"12", "", wire.CodeInvalidNumber},
	} {
		d, err := r.Route(tc.in)
		var re *RouteError
		switch {
		case tc.code != "":
			if !errors.As(err, &re) || re.Code != tc.code || re.E164 != tc.e164 {
				t.Errorf("Route(%q) = %+v, %v; want %s for %s", tc.in, d, err, tc.code, tc.e164)
			}
		case tc.e164 == "":
			if err != nil || d.Kind != KindExtension {
				t.Errorf("Route(%q) = %+v, %v; want the extension", tc.in, d, err)
			}
		default:
			if err != nil || d.E164 != tc.e164 {
				t.Errorf("Route(%q) = %+v, %v; want %s", tc.in, d, err, tc.e164)
			}
		}
	}
	// The older national_prefix + country_code pair names the same region.
	rules = DefaultRules()
	rules.PSTN.NationalPrefix, rules.PSTN.CountryCode = "0", "44"
	rules.PSTN.InternationalPrefixes = []string{"00"}
	r, err = NewRouter(rules)
	if err != nil {
		t.Fatal(err)
	}
	if d, err := r.Route("020 7946 0000"); err != nil || d.E164 != "+442079460000" {
		t.Errorf("legacy national prefix: %+v, %v", d, err)
	}
}

func TestPolicyByCountryAndExceptions(t *testing.T) {
	rules := DefaultRules()
	rules.PSTN.AllowCountries = []string{"GB", "ie"}
	rules.PSTN.DenyClasses = []Class{"premium_rate", "invalid"}
	rules.PSTN.AllowPrefixes = []string{"+449065551234", "+33899"}
	rules.PSTN.Deny = append(rules.PSTN.Deny, "+33899123")
	r, err := NewRouter(rules)
	if err != nil {
		t.Fatal(err)
	}
	for in, want := range map[string]string{
		"+442079460000":  "",
		"+35312345678":   "",
		"+447012345678":  "",                                     // personal numbers no longer denied
		"+33123456789":   "calls to FR are not allowed",          // country
		"+449065551234":  "",                                     // an exception admits this premium number
		"+449065551235":  "premium-rate numbers are not allowed", // but not its neighbour
		"+33899123456":   "numbers starting +33899123 are blocked (dialplan.pstn.deny)",
		"+33899000000":   "", // the exception also admits another country
		"+80012345678":   "calls to non-geographic numbers (001) are not allowed",
		"+4420794600000": "numbers that are not valid in their country's numbering plan are not allowed",
	} {
		_, err := r.Route(in)
		got := ""
		if err != nil {
			var re *RouteError
			if !errors.As(err, &re) {
				t.Fatalf("Route(%q): %v", in, err)
			}
			got = re.Reason
		}
		if got != want {
			t.Errorf("Route(%q): %q, want %q", in, got, want)
		}
	}
	off := DefaultRules()
	off.PSTN.Allow = nil
	r, err = NewRouter(off)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Route("+442079460000"); err == nil || !strings.Contains(err.Error(), "disabled") {
		t.Errorf("PSTN off: %v", err)
	}
}

func multiTrunkRules() Rules {
	rules := DefaultRules()
	rules.PSTN.Trunks = []Trunk{
		{Name: "uk", MaxChannels: 2, DialFormat: FormatNational, CallerIDs: []string{"+4420"}, DefaultCallerID: "+442071230000"},
		{Name: "de", CallerIDFormat: FormatDigits},
		{Name: "backup"},
	}
	rules.PSTN.Routes = []Route{
		{Countries: []string{"gb"}, Trunks: []string{"uk", "backup"}},
		{Classes: []Class{ClassTollFree}, Trunks: []string{"backup"}},
		{Countries: []string{"DE"}, Prefixes: []string{"+4930"}, Trunks: []string{"de"}},
	}
	rules.PSTN.PrefixTrunks = map[string]string{"+49": "backup", "+4989": "de"}
	return rules
}

func TestRoutesChooseTrunks(t *testing.T) {
	r, err := NewRouter(multiTrunkRules())
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		in     string
		trunks []string
		route  string
	}{
		{"+442079460000", []string{"uk", "backup"}, "routes[0] (countries GB)"},
		{"+448001234567", []string{"uk", "backup"}, "routes[0] (countries GB)"}, // first match wins
		{"+18005550100", []string{"backup"}, "routes[1] (classes TOLL_FREE)"},
		{"+49301234567", []string{"de"}, "routes[2] (countries DE; prefixes +4930)"},
		{"+49891234567", []string{"de"}, "trunks.+4989 (prefixes +4989)"}, // longest legacy prefix first
		{"+491701234567", []string{"backup"}, "trunks.+49 (prefixes +49)"},
		{"+33123456789", []string{"uk", "de", "backup"}, "no route matched: every trunk in order"},
	} {
		d, err := r.Route(tc.in)
		if err != nil {
			t.Errorf("Route(%q): %v", tc.in, err)
			continue
		}
		if !slices.Equal(d.Trunks, tc.trunks) || d.Trunk != tc.trunks[0] || d.Route != tc.route {
			t.Errorf("Route(%q): trunks %v (%q) by %q; want %v by %q", tc.in, d.Trunks, d.Trunk, d.Route, tc.trunks, tc.route)
		}
	}
}

func TestTrunkEndpointAndCallerID(t *testing.T) {
	r, err := NewRouter(multiTrunkRules())
	if err != nil {
		t.Fatal(err)
	}
	d, err := r.Route("+442079460000")
	if err != nil {
		t.Fatal(err)
	}
	for trunk, want := range map[string]string{"uk": "PJSIP/02079460000@uk", "backup": "PJSIP/+442079460000@backup", "de": "PJSIP/+442079460000@de"} {
		if got, err := r.TrunkEndpoint(d, trunk); err != nil || got != want {
			t.Errorf("TrunkEndpoint(%s) = %q, %v; want %q", trunk, got, err, want)
		}
	}
	if _, err := r.TrunkEndpoint(d, "nope"); err == nil {
		t.Error("endpoint on an unknown trunk")
	}
	ext, _ := r.Route("600")
	if _, err := r.TrunkEndpoint(ext, "uk"); err == nil {
		t.Error("an extension got a trunk endpoint")
	}
	for _, tc := range []struct{ trunk, id, want, code string }{
		{"uk", "+442071230001", "+442071230001", ""},
		{"uk", "+441614960000", "+442071230000", ""}, // not a London number: the trunk's default
		{"uk", "", "+442071230000", ""},
		{"de", "+442071230001", "442071230001", ""},
		{"backup", "+15551230000", "+15551230000", ""},
		{"backup", "", "", wire.CodeForbiddenCallerID},
	} {
		got, err := r.PresentCallerID(tc.trunk, tc.id)
		if tc.code != "" {
			if !errors.Is(err, ErrForbiddenCallerID) {
				t.Errorf("PresentCallerID(%s, %q) = %q, %v; want %s", tc.trunk, tc.id, got, err, tc.code)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("PresentCallerID(%s, %q) = %q, %v; want %q", tc.trunk, tc.id, got, err, tc.want)
		}
	}
	if tr, ok := r.Trunk("uk"); !ok || tr.MaxChannels != 2 {
		t.Errorf("Trunk(uk) = %+v, %v", tr, ok)
	}
}

func TestFailover(t *testing.T) {
	r := defaultRouter(t)
	if r.FailoverTimeout() != DefaultFailoverTimeout {
		t.Errorf("timeout %v", r.FailoverTimeout())
	}
	for _, tc := range []struct {
		o    TrunkOutcome
		want bool
	}{
		{TrunkOutcome{SIPCode: 503, Cause: 34}, true},
		{TrunkOutcome{Cause: 34}, true}, // 503 known only by its cause
		{TrunkOutcome{DialStatus: "CONGESTION"}, true},
		{TrunkOutcome{DialStatus: "chanunavail"}, true},
		{TrunkOutcome{TimedOut: true}, true},
		{TrunkOutcome{AtLimit: true}, true},
		{TrunkOutcome{DialStatus: "BUSY", Cause: 17, SIPCode: 486}, false},
		{TrunkOutcome{DialStatus: "NOANSWER", Cause: 19}, false},
		{TrunkOutcome{SIPCode: 500, Cause: 38}, false},
		{TrunkOutcome{SIPCode: 404, Cause: 1}, false},
		{TrunkOutcome{}, false},
	} {
		if got := r.Failover(tc.o); got != tc.want {
			t.Errorf("Failover(%+v) = %v, want %v", tc.o, got, tc.want)
		}
	}
	rules := DefaultRules()
	rules.PSTN.FailoverCauses = []string{"5xx", "408"}
	r, err := NewRouter(rules)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		o    TrunkOutcome
		want bool
	}{
		{TrunkOutcome{SIPCode: 502}, true},
		{TrunkOutcome{Cause: 38}, true}, // 500's cause
		{TrunkOutcome{Cause: 18}, true}, // 408's cause
		{TrunkOutcome{DialStatus: "CONGESTION"}, false},
		{TrunkOutcome{SIPCode: 486, Cause: 17}, false},
	} {
		if got := r.Failover(tc.o); got != tc.want {
			t.Errorf("5xx,408: Failover(%+v) = %v, want %v", tc.o, got, tc.want)
		}
	}
}

func TestPickCallerID(t *testing.T) {
	allowed := []string{"+442071230001", "+442071230002", "+442071230003"}
	for _, tc := range []struct {
		allowed        []string
		requested, out string
		refused        bool
	}{
		{allowed, "", "+442071230001", false},
		{allowed, "+442071230002", "+442071230002", false},
		{allowed, "+442071230003", "+442071230003", false},
		{allowed, "+442071230009", "", true},
		{allowed, "+44 20 7123 0002", "", true}, // exact match only
		{nil, "+442071230001", "", true},
		{nil, "", "", false},
		{[]string{"alice"}, "", "", true}, // a token's garbage never reaches a carrier
	} {
		got, err := PickCallerID(tc.allowed, tc.requested)
		if tc.refused {
			var re *RouteError
			if !errors.As(err, &re) || re.Code != wire.CodeForbiddenCallerID || !errors.Is(err, ErrForbiddenCallerID) {
				t.Errorf("PickCallerID(%q, %q) = %q, %v; want forbidden_caller_id", tc.allowed, tc.requested, got, err)
			}
			continue
		}
		if err != nil || got != tc.out {
			t.Errorf("PickCallerID(%q, %q) = %q, %v; want %q", tc.allowed, tc.requested, got, err, tc.out)
		}
	}
}

func TestExplain(t *testing.T) {
	r, err := NewRouter(multiTrunkRules())
	if err != nil {
		t.Fatal(err)
	}
	v := r.Explain("+44 20 7946 0000", nil)
	if v.Decision != VerdictAllow || v.E164 != "+442079460000" || v.Class != ClassFixedLine || v.Country != "GB" ||
		v.Trunk != "uk" || !slices.Equal(v.Trunks, []string{"uk", "backup"}) || v.Endpoint != "PJSIP/02079460000@uk" {
		t.Errorf("allow verdict %+v", v)
	}
	if w := v.Words(); !strings.Contains(w, "allow") || !strings.Contains(w, "uk then backup") {
		t.Errorf("words %q", w)
	}
	v = r.Explain("+4409065551234", nil)
	if v.Decision != VerdictRefuse || v.Code != wire.CodeForbiddenDestination || v.Message != "premium-rate numbers are not allowed" ||
		v.Class != ClassPremiumRate || v.E164 != "+449065551234" || v.Trunk != "" {
		t.Errorf("refuse verdict %+v", v)
	}
	if w := v.Words(); !strings.Contains(w, "refuse") || !strings.Contains(w, "premium-rate") {
		t.Errorf("words %q", w)
	}
	v = r.Explain("+442079460000", []string{"ext"})
	if v.Decision != VerdictRefuse || v.Code != wire.CodeForbiddenDestination || v.Trunk != "uk" {
		t.Errorf("not granted: %+v", v)
	}
	if v = r.Explain("600", []string{"ext"}); v.Decision != VerdictAllow || v.Kind != KindExtension {
		t.Errorf("extension: %+v", v)
	}
	if v = r.Explain("100&PJSIP/x", nil); v.Decision != VerdictRefuse || v.Code != wire.CodeInvalidNumber {
		t.Errorf("junk: %+v", v)
	}
}

func FuzzRoute(f *testing.F) {
	for _, s := range []string{"100", "600", "7001", "8123", "alice", "+442079460000", "0044 20 7946 0000",
		"100&PJSIP/trunk/900", "600@internal", "${EXTEN}", "\n", "١٠٠", "+19005550100", "", strings.Repeat("9", 200),
		"tel:+44-20-7946-0000", "+44 (0)20 7946 0000", "＋４４９０６５５５１２３４", "011 1 900 555 0100"} {
		f.Add(s)
	}
	for _, tc := range dialplantest.TrickyNumbers {
		f.Add(tc.In)
	}
	r := defaultRouter(f)
	f.Fuzz(func(t *testing.T, in string) {
		d, err := r.Route(in)
		if err != nil {
			var re *RouteError
			if !errors.As(err, &re) || (re.Code != wire.CodeInvalidNumber && re.Code != wire.CodeForbiddenDestination) {
				t.Fatalf("Route(%q): untyped error %v", in, err)
			}
			if !reflect.DeepEqual(d, Decision{}) {
				t.Fatalf("Route(%q): decision %+v returned with error", in, d)
			}
			if re.E164 != "" && !E164Re.MatchString(re.E164) {
				t.Fatalf("Route(%q): refusal names %q, not E.164", in, re.E164)
			}
			return
		}
		checkDecision(t, r, in, d)
	})
}

func checkDecision(t *testing.T, r *Router, in string, d Decision) {
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
		if d.Endpoint != "" || d.Trunk != "" || len(d.Trunks) > 0 {
			t.Fatalf("Route(%q): user decision with endpoint/trunk %+v", in, d)
		}
	case KindRoom:
		if !onlyDigits(d.Number) || d.Endpoint != "" || d.Trunk != "" || len(d.Trunks) > 0 {
			t.Fatalf("Route(%q): bad room decision %+v", in, d)
		}
	case KindExtension:
		if !onlyDigits(d.Number) || d.Trunk != "" || len(d.Trunks) > 0 {
			t.Fatalf("Route(%q): bad extension decision %+v", in, d)
		}
	case KindPSTN:
		if !E164Re.MatchString(d.Number) || d.E164 != d.Number {
			t.Fatalf("Route(%q): PSTN number %q is not E.164", in, d.Number)
		}
		if slices.Contains(DefaultDenyClasses, d.Class) || d.Class == "" {
			t.Fatalf("Route(%q): refused class %s routed: %+v", in, d.Class, d)
		}
		if d.Country == "" || len(d.Trunks) == 0 || d.Trunk != d.Trunks[0] {
			t.Fatalf("Route(%q): bad PSTN decision %+v", in, d)
		}
		for _, pre := range DefaultDeny {
			if strings.HasPrefix(d.Number, pre) {
				t.Fatalf("Route(%q): denied prefix %s routed", in, pre)
			}
		}
		if ep, err := r.TrunkEndpoint(d, d.Trunk); err != nil || ep != "PJSIP/"+d.Number+"@"+d.Trunk {
			t.Fatalf("Route(%q): trunk endpoint %q, %v", in, ep, err)
		}
		// The normalised number is a fixed point: routing it again gives the same number, class and country.
		again, err := r.Route(d.Number)
		if err != nil || again.E164 != d.E164 || again.Class != d.Class || again.Country != d.Country {
			t.Fatalf("Route(%q) = %s %s %s, but Route(%s) = %+v, %v", in, d.E164, d.Class, d.Country, d.Number, again, err)
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
	return onlyASCIIDigits(s)
}

func BenchmarkRoutePSTN(b *testing.B) {
	r := defaultRouter(b)
	for b.Loop() {
		if _, err := r.Route("+44 20 7946 0000"); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRouteExtension is the baseline: routing that never reaches libphonenumber.
func BenchmarkRouteExtension(b *testing.B) {
	r := defaultRouter(b)
	for b.Loop() {
		if _, err := r.Route("600"); err != nil {
			b.Fatal(err)
		}
	}
}
