package testenv

import "testing"

func TestContactUsable(t *testing.T) {
	const header = "  Contact:  <Aor/ContactUri..............................> <Hash....> <Status> <RTT(ms)..>\n" +
		"==========================================================================================\n"
	for _, tc := range []struct {
		name, out, aor string
		want           bool
	}{
		{"available", header + "  Contact:  alpha/sip:127.0.0.2:5060                       0e0ee7d2ab Avail         0.512\n", "alpha", true},
		{"not qualified", header + "  Contact:  alpha/sip:127.0.0.2:5060                       0e0ee7d2ab NonQual         nan\n", "alpha", true},
		{"unavailable", header + "  Contact:  alpha/sip:127.0.0.2:5060                       0e0ee7d2ab Unavail         nan\n", "alpha", false},
		{"unknown", header + "  Contact:  alpha/sip:127.0.0.2:5060                       0e0ee7d2ab Unknown         nan\n", "alpha", false},
		{"another trunk's", header + "  Contact:  beta/sip:127.0.0.3:5060                        0e0ee7d2ab Avail         0.512\n", "alpha", false},
		{"a prefix of another name", header + "  Contact:  alphabet/sip:127.0.0.3:5060                    0e0ee7d2ab Avail         0.512\n", "alpha", false},
		{"none", "No objects found.\n", "alpha", false},
	} {
		if got := ContactUsable(tc.out, tc.aor); got != tc.want {
			t.Errorf("%s: ContactUsable = %v, want %v", tc.name, got, tc.want)
		}
	}
}
