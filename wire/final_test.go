package wire

import (
	"slices"
	"testing"
)

func TestFinalCodesAreCodesWithKnownCauses(t *testing.T) {
	for _, c := range FinalCodes() {
		if !slices.Contains(Codes, c) {
			t.Errorf("final code %s is not in Codes", c)
		}
		if !slices.Contains(Causes(), CauseForCode(c)) {
			t.Errorf("final code %s maps to unknown cause %s", c, CauseForCode(c))
		}
	}
	for _, c := range []string{CodeBadMessage, CodeUnknownCall, CodeDuplicateCall, CodeRateLimited} {
		if EndsCall(c) {
			t.Errorf("%s must not end a call", c)
		}
	}
	if CauseCode(CauseSignallingLost) != 41 {
		t.Errorf("signalling_lost code %d", CauseCode(CauseSignallingLost))
	}
}
