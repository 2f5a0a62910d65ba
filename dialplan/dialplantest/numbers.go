// Package dialplantest holds test data shared by the dialplan unit tests and the integration tests: outside
// numbers written the ways people and attackers write them.
package dialplantest

import "github.com/patchbay/patchbay/wire"

// TrickyNumbers are outside numbers with what the default rules must make of each: the E.164 number, its class
// (libphonenumber's name) and country, and whether it is refused and with which code. The dialplan tests route
// them directly; the integration tests run them through `patchbay route --json`.
var TrickyNumbers = []struct {
	Name, In string
	// E164, Class, Country: what the number is (E164 empty when it does not parse).
	E164    string
	Class   string
	Country string
	// Code is "" when the call is allowed, else the refusal's code.
	Code string
}{
	// The six bypasses of the old prefix list: a national trunk prefix after the country code, an exit code.
	{"UK premium, trunk 0 after +44", "+4409065551234", "+449065551234", "PREMIUM_RATE", "GB", wire.CodeForbiddenDestination},
	{"UK premium, dashes and trunk 0", "+44-0-906-555-1234", "+449065551234", "PREMIUM_RATE", "GB", wire.CodeForbiddenDestination},
	{"DE premium, trunk 0 after +49", "+4909001234567", "+499001234567", "PREMIUM_RATE", "DE", wire.CodeForbiddenDestination},
	{"FR premium, trunk 0 after +33", "+330899123456", "+33899123456", "PREMIUM_RATE", "FR", wire.CodeForbiddenDestination},
	{"UK 0906 after 00 44 0, one digit short", "00440906555123", "+44906555123", "UNKNOWN", "GB", wire.CodeForbiddenDestination},
	{"NANP 0 after +1", "+1-0-900-555-0100", "+109005550100", "UNKNOWN", "US", wire.CodeForbiddenDestination},

	// Premium rate and friends, however written.
	{"NANP 900", "+1 (900) 555-0100", "+19005550100", "PREMIUM_RATE", "US", wire.CodeForbiddenDestination},
	{"NANP 900 with dots", "+1.900.555.0100", "+19005550100", "PREMIUM_RATE", "US", wire.CodeForbiddenDestination},
	{"NANP 900 via 00", "001 900 555 0100", "+19005550100", "PREMIUM_RATE", "US", wire.CodeForbiddenDestination},
	{"NANP 900 via 011", "011-1-900-555-0100", "+19005550100", "PREMIUM_RATE", "US", wire.CodeForbiddenDestination},
	{"UK 087 revenue share", "+448712345678", "+448712345678", "PREMIUM_RATE", "GB", wire.CodeForbiddenDestination},
	{"UK 070 personal number", "+447012345678", "+447012345678", "PERSONAL_NUMBER", "GB", wire.CodeForbiddenDestination},
	{"DE 0137 mass calling", "+491371234567", "+491371234567", "SHARED_COST", "DE", wire.CodeForbiddenDestination},
	{"DE 0180 shared cost", "+49 180 1234 5678", "+4918012345678", "SHARED_COST", "DE", wire.CodeForbiddenDestination},
	{"UK premium in a tel: URI", "tel:+44-906-555-1234", "+449065551234", "PREMIUM_RATE", "GB", wire.CodeForbiddenDestination},
	{"UK premium in full-width digits", "＋４４９０６５５５１２３４", "+449065551234", "PREMIUM_RATE", "GB", wire.CodeForbiddenDestination},
	{"NANP 900 full-width with ideographic spaces", "＋１\u3000９００\u3000５５５\u3000０１００", "+19005550100", "PREMIUM_RATE", "US", wire.CodeForbiddenDestination},
	{"UK premium in Arabic-Indic digits", "+٤٤٩٠٦٥٥٥١٢٣٤", "+449065551234", "PREMIUM_RATE", "GB", wire.CodeForbiddenDestination},
	{"NANP 976 is no area code", "+19765550100", "+19765550100", "UNKNOWN", "US", wire.CodeForbiddenDestination},
	{"UK number one digit too long", "+4420794600000", "+4420794600000", "UNKNOWN", "GB", wire.CodeForbiddenDestination},
	{"Inmarsat satellite", "+870123456789", "+870123456789", "UNKNOWN", "001", wire.CodeForbiddenDestination},
	{"international network 882", "+882 16 1234 5678", "+8821612345678", "VOIP", "001", wire.CodeForbiddenDestination},

	// Ordinary numbers, however written.
	{"London", "+44 20 7946 0000", "+442079460000", "FIXED_LINE", "GB", ""},
	{"London with (0)", "+44 (0)20 7946 0000", "+442079460000", "FIXED_LINE", "GB", ""},
	{"London with a bare trunk 0", "+44 0 20 7946 0000", "+442079460000", "FIXED_LINE", "GB", ""},
	{"London via 00 with dots", "0044.20.7946.0000", "+442079460000", "FIXED_LINE", "GB", ""},
	{"London via 011", "011 44 20 7946 0000", "+442079460000", "FIXED_LINE", "GB", ""},
	{"London as a tel: URI", "tel:+44-20-7946-0000", "+442079460000", "FIXED_LINE", "GB", ""},
	{"London as an upper-case TEL: URI", "TEL:+442079460000", "+442079460000", "FIXED_LINE", "GB", ""},
	{"London in full-width", "＋４４ ２０ ７９４６ ００００", "+442079460000", "FIXED_LINE", "GB", ""},
	{"London with no-break spaces", "+44\u00a020\u00a07946\u00a00000", "+442079460000", "FIXED_LINE", "GB", ""},
	{"London with en dashes", "+44–20–7946–0000", "+442079460000", "FIXED_LINE", "GB", ""},
	{"Rome keeps its leading 0", "+39 06 1234 5678", "+390612345678", "FIXED_LINE", "IT", ""},
	{"Rome with (0) is still Rome", "+39 (0)6 1234 5678", "+390612345678", "FIXED_LINE", "IT", ""},
	{"Berlin with (0)", "+49 (0)30 1234567", "+49301234567", "FIXED_LINE", "DE", ""},
	{"San Francisco", "+1 415 555 0100", "+14155550100", "FIXED_LINE_OR_MOBILE", "US", ""},
	{"New York via 00", "00 1 212 555 0199", "+12125550199", "FIXED_LINE_OR_MOBILE", "US", ""},
	{"German mobile", "+49 170 1234567", "+491701234567", "MOBILE", "DE", ""},
	{"Isle of Man mobile under +44", "+44 7624 123456", "+447624123456", "MOBILE", "IM", ""},
	{"UK freephone", "+44 800 123 4567", "+448001234567", "TOLL_FREE", "GB", ""},
	{"NANP toll free", "+1-800-555-0100", "+18005550100", "TOLL_FREE", "US", ""},
	{"UK 03 UAN", "+44 300 123 4567", "+443001234567", "UAN", "GB", ""},
	{"French VoIP 09", "+33 9 76 12 34 56", "+33976123456", "VOIP", "FR", ""},
	{"international freephone", "+800 1234 5678", "+80012345678", "TOLL_FREE", "001", ""},

	// Not numbers at all.
	{"too short", "+44123", "", "", "", wire.CodeInvalidNumber},
	{"16 digits", "+1234567890123456", "", "", "", wire.CodeInvalidNumber},
	{"country code 0", "+0123456789", "", "", "", wire.CodeInvalidNumber},
	{"no such country code", "+999 1234 5678", "", "", "", wire.CodeInvalidNumber},
	{"extension written out", "+44 20 7946 0000 ext 12", "", "", "", wire.CodeInvalidNumber},
	{"extension parameter", "+442079460000;ext=12", "", "", "", wire.CodeInvalidNumber},
	{"tel: URI with a context", "tel:7946;phone-context=+4420", "", "", "", wire.CodeInvalidNumber},
	{"vanity letters", "+1-800-FLOWERS", "", "", "", wire.CodeInvalidNumber},
	{"second plus", "+44+2079460000", "", "", "", wire.CodeInvalidNumber},
	{"national without a default region", "020 7946 0000", "", "", "", wire.CodeInvalidNumber},
	{"dial string injection after a number", "+14155550100&PJSIP/pstn/+19005550100", "", "", "", wire.CodeInvalidNumber},
	{"Devanagari digits", "+४४२०७९४६००००", "", "", "", wire.CodeInvalidNumber},
}
