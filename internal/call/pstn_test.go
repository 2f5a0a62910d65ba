package call

import (
	"testing"

	"github.com/patchbay/patchbay/dialplan"
	"github.com/patchbay/patchbay/wire"
)

func TestPhoneEndpoint(t *testing.T) {
	for in, want := range map[string]string{
		"PJSIP/101-0000002a":      "101",
		"PJSIP/my-phone-00000001": "my-phone",
		"PJSIP/101":               "101",
		"Local/101@x-0001;1":      "",
		"":                        "",
	} {
		if got := phoneEndpoint(in); got != want {
			t.Errorf("phoneEndpoint(%q) = %q, want %q", in, got, want)
		}
	}
}

// Outside numbers go out over their trunks (trunks.go, tested against real carriers in TestTrunk…).
func TestHowABrowserReachesEachExtension(t *testing.T) {
	r, err := dialplan.NewRouter(dialplan.DefaultRules())
	if err != nil {
		t.Fatal(err)
	}
	phones, _ := dialplan.CompilePatterns([]string{"_1XX"})
	answering, _ := dialplan.CompilePatterns([]string{"600"})
	m := &Manager{o: Options{EndpointExtensions: phones, DialplanExtensions: answering}}
	for _, tc := range []struct {
		to       string
		how      legHow
		endpoint string
	}{
		{"101", legEndpoint, "PJSIP/101"},
		{"600", legInDialplan, "Local/600@from-patchbay"},
		{"602", legLocal, "Local/602@from-patchbay"},
	} {
		d, err := r.Route(tc.to)
		if err != nil {
			t.Fatal(err)
		}
		if how, ep := m.extensionLeg(d), m.farEndpoint(d); how != tc.how || ep != tc.endpoint {
			t.Errorf("%s: how %d endpoint %q, want %d %q", tc.to, how, ep, tc.how, tc.endpoint)
		}
	}
}

func TestCallerVarsSetFromAndPAISources(t *testing.T) {
	v := callerVars("+442071230001", "Alice")
	for k, want := range map[string]string{
		"CALLERID(num)": "+442071230001", "CONNECTEDLINE(num,i)": "+442071230001",
		"CALLERID(name)": "Alice", "CONNECTEDLINE(name,i)": "Alice",
	} {
		if v[k] != want {
			t.Errorf("%s = %q, want %q", k, v[k], want)
		}
	}
	if v := callerVars("+442071230001", ""); len(v) != 2 {
		t.Errorf("empty name must not be set: %v", v)
	}
}

func TestPickCallerID(t *testing.T) {
	allowed := []string{"+442071230001", "+442071230002"}
	for _, tc := range []struct {
		requested, def string
		allowed        []string
		want, code     string
	}{
		{"", "", allowed, "+442071230001", ""},
		{"+442071230002", "", allowed, "+442071230002", ""},
		{"+442071239999", "", allowed, "", wire.CodeForbiddenCallerID},
		{"", "+15550100", nil, "+15550100", ""},
		{"", "", nil, "", wire.CodeForbiddenCallerID},
		{"", "", []string{"alice"}, "", wire.CodeForbiddenCallerID},
		{"+4420&PJSIP/x", "", allowed, "", wire.CodeForbiddenCallerID},
	} {
		got, r := pickCallerID(tc.requested, tc.allowed, tc.def)
		code := ""
		if r != nil {
			code = r.Code
		}
		if got != tc.want || code != tc.code {
			t.Errorf("pick(%q, %v, %q) = %q %q, want %q %q", tc.requested, tc.allowed, tc.def, got, code, tc.want, tc.code)
		}
	}
}
