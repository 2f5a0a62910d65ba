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

func TestRefusalCause(t *testing.T) {
	for _, tc := range []struct{ code, cause string }{
		{CodeBadMessage, CauseInterworking},
		{CodeNotAllowed, CauseCallRejected},
		{CodeUnknownCall, CauseCallRejected},
		{CodeInvalidNumber, CauseInvalidNumberFormat},
		{CodeUnknownRoom, CauseUnallocatedNumber},
		{CodeUnavailable, CauseTemporaryFailure},
	} {
		if got := RefusalCause(tc.code); got != tc.cause {
			t.Errorf("RefusalCause(%s) = %s, want %s", tc.code, got, tc.cause)
		}
	}
	for _, c := range FinalCodes() { // a final code's refusal ends as the code says
		if RefusalCause(c) != CauseForCode(c) {
			t.Errorf("RefusalCause(%s) = %s, CauseForCode %s", c, RefusalCause(c), CauseForCode(c))
		}
	}
	for _, c := range Codes {
		if !slices.Contains(Causes(), RefusalCause(c)) {
			t.Errorf("RefusalCause(%s) = %s is not a cause", c, RefusalCause(c))
		}
	}
}
