package call

import (
	"testing"

	"github.com/patchbay/patchbay/dialplan"
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

func TestFarEndpointUsesTheRoutersTrunk(t *testing.T) {
	r, err := dialplan.NewRouter(dialplan.DefaultRules())
	if err != nil {
		t.Fatal(err)
	}
	d, err := r.Route("+14155550100")
	if err != nil {
		t.Fatal(err)
	}
	if got := farEndpoint(d); got != "PJSIP/+14155550100@pstn" {
		t.Errorf("PSTN endpoint %q", got)
	}
	d, err = r.Route("600")
	if err != nil {
		t.Fatal(err)
	}
	if got := farEndpoint(d); got != "Local/600@from-patchbay" {
		t.Errorf("extension endpoint %q", got)
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

func TestCallerIDFormat(t *testing.T) {
	for id, ok := range map[string]bool{"+442071230001": true, "02071230001": false, "2071230001": true,
		"+44 20": false, "+4420&PJSIP/x": false, "alice": false, "": false} {
		if callerIDRe.MatchString(id) != ok {
			t.Errorf("caller ID %q accepted=%v, want %v", id, !ok, ok)
		}
	}
}
