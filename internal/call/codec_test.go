package call

import (
	"testing"

	"github.com/patchbay/patchbay/dialplan"
	"github.com/patchbay/patchbay/webrtc/media"
)

func TestCodecPolicy(t *testing.T) {
	for _, tc := range []struct {
		native string
		want   media.Codec
	}{{"(ulaw)", media.PCMU}, {"(alaw)", media.PCMA}, {"(opus)", media.Opus}, {"", media.PCMU}} {
		if got := callerCodec(tc.native); got != tc.want {
			t.Errorf("callerCodec(%q) = %s, want %s", tc.native, got, tc.want)
		}
	}
	for c, want := range map[media.Codec]string{media.PCMU: "ulaw", media.PCMA: "alaw", media.Opus: "ulaw,alaw"} {
		if got := farFormats(c); got != want {
			t.Errorf("farFormats(%s) = %q, want %q", c, got, want)
		}
	}
	if !wideband(dialplan.Decision{Kind: dialplan.KindUser}) || wideband(dialplan.Decision{Kind: dialplan.KindExtension}) ||
		wideband(dialplan.Decision{Kind: dialplan.KindPSTN}) {
		t.Error("only browser users are wideband destinations")
	}
	vars := userVars(dialplan.Decision{Kind: dialplan.KindUser, Number: "bob-jones"}, map[string]string{"CALLERID(num)": "alice"})
	if vars["PB_USER"] != "bob-jones" || vars["CALLERID(num)"] != "alice" {
		t.Errorf("userVars = %v", vars)
	}
}
