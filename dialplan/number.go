package dialplan

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/nyaruka/phonenumbers"
)

// Class is the kind of an outside number, as libphonenumber classifies it from the numbering plan of its country.
// The names are libphonenumber's.
type Class string

// Number classes. Policy is written in these terms (dialplan.pstn.deny_classes).
const (
	ClassFixedLine         Class = "FIXED_LINE"
	ClassMobile            Class = "MOBILE"
	ClassFixedLineOrMobile Class = "FIXED_LINE_OR_MOBILE" // where the plan cannot tell the two apart (NANP)
	ClassTollFree          Class = "TOLL_FREE"
	ClassPremiumRate       Class = "PREMIUM_RATE"
	ClassSharedCost        Class = "SHARED_COST"
	ClassVoIP              Class = "VOIP"
	ClassPersonalNumber    Class = "PERSONAL_NUMBER"
	ClassPager             Class = "PAGER"
	ClassUAN               Class = "UAN" // "universal access" company numbers
	ClassVoicemail         Class = "VOICEMAIL"
	// ClassUnknown is a number that is not valid in its country's plan: unallocated, mistyped, or a trick.
	ClassUnknown Class = "UNKNOWN"
)

// Classes lists every class, for docs, validation and tests.
var Classes = []Class{
	ClassFixedLine, ClassMobile, ClassFixedLineOrMobile, ClassTollFree, ClassPremiumRate, ClassSharedCost,
	ClassVoIP, ClassPersonalNumber, ClassPager, ClassUAN, ClassVoicemail, ClassUnknown,
}

// DefaultDenyClasses are the classes refused unless the configuration says otherwise: numbers whose owner is
// paid per minute by the caller's carrier (toll fraud's target), or that route somewhere no one can predict.
var DefaultDenyClasses = []Class{ClassPremiumRate, ClassSharedCost, ClassPersonalNumber, ClassPager, ClassUnknown}

// ParseClass reads a class name as written in a config file: libphonenumber's name in any case, with "INVALID"
// accepted for UNKNOWN.
func ParseClass(s string) (Class, error) {
	u := strings.ToUpper(strings.TrimSpace(s))
	if u == "INVALID" {
		return ClassUnknown, nil
	}
	for _, c := range Classes {
		if string(c) == u {
			return c, nil
		}
	}
	return "", fmt.Errorf("%q is not a number class; use one of %s", s, classList())
}

func classList() string {
	names := make([]string, len(Classes))
	for i, c := range Classes {
		names[i] = string(c)
	}
	return strings.Join(names, ", ")
}

// Noun names the class in words for refusals: "premium-rate numbers are not allowed".
func (c Class) Noun() string {
	switch c {
	case ClassFixedLine:
		return "fixed-line numbers"
	case ClassMobile:
		return "mobile numbers"
	case ClassFixedLineOrMobile:
		return "fixed-line or mobile numbers"
	case ClassTollFree:
		return "toll-free numbers"
	case ClassPremiumRate:
		return "premium-rate numbers"
	case ClassSharedCost:
		return "shared-cost numbers"
	case ClassVoIP:
		return "VoIP numbers"
	case ClassPersonalNumber:
		return "personal numbers"
	case ClassPager:
		return "pager numbers"
	case ClassUAN:
		return "universal access (UAN) numbers"
	case ClassVoicemail:
		return "voicemail access numbers"
	default:
		return "numbers that are not valid in their country's numbering plan"
	}
}

func classOf(t phonenumbers.PhoneNumberType) Class {
	switch t {
	case phonenumbers.FIXED_LINE:
		return ClassFixedLine
	case phonenumbers.MOBILE:
		return ClassMobile
	case phonenumbers.FIXED_LINE_OR_MOBILE:
		return ClassFixedLineOrMobile
	case phonenumbers.TOLL_FREE:
		return ClassTollFree
	case phonenumbers.PREMIUM_RATE:
		return ClassPremiumRate
	case phonenumbers.SHARED_COST:
		return ClassSharedCost
	case phonenumbers.VOIP:
		return ClassVoIP
	case phonenumbers.PERSONAL_NUMBER:
		return ClassPersonalNumber
	case phonenumbers.PAGER:
		return ClassPager
	case phonenumbers.UAN:
		return ClassUAN
	case phonenumbers.VOICEMAIL:
		return ClassVoicemail
	default:
		return ClassUnknown
	}
}

// E.164 allows at most 15 digits after '+'. The shortest numbers in service have 7 (+290 4444, St Helena).
const (
	e164MinDigits = 7
	e164MaxDigits = 15
)

// E164Re is what every PSTN decision's number matches.
var E164Re = regexp.MustCompile(`^\+[1-9][0-9]{6,14}$`)

// NonGeoRegion is the "country" of numbers that belong to no country (+800 freephone, +882/+883 networks).
const NonGeoRegion = "001"

// phoneNumber is an outside number after parsing: its E.164 form, class and country.
type phoneNumber struct {
	e164    string
	class   Class
	country string // ISO 3166 alpha-2, or NonGeoRegion
}

// parsePhone parses num ("+…" or, with region set, a national number of only ASCII digits) with libphonenumber.
// The caller has already reduced num to [+0-9]. The E.164 form is libphonenumber's: a national trunk prefix
// written after the country code ("+44 0 906…") is dropped when the rest is a number of that country, so the
// class is that of the number that will really be dialled.
func parsePhone(input, num, region string) (phoneNumber, error) {
	digits := strings.TrimPrefix(num, "+")
	if num[0] == '+' {
		if len(digits) < e164MinDigits || len(digits) > e164MaxDigits {
			return phoneNumber{}, invalidNumber(input, "international numbers have %d to %d digits after '+', got %d", e164MinDigits, e164MaxDigits, len(digits))
		}
		if digits[0] == '0' {
			return phoneNumber{}, invalidNumber(input, "country codes do not start with 0")
		}
	} else if len(digits) > e164MaxDigits+3 {
		return phoneNumber{}, invalidNumber(input, "too many digits for a phone number")
	}
	n, err := phonenumbers.Parse(num, region)
	if err != nil {
		return phoneNumber{}, invalidNumber(input, "not a phone number: %v", err)
	}
	if n.GetExtension() != "" {
		return phoneNumber{}, invalidNumber(input, "extensions cannot be dialled")
	}
	e164 := phonenumbers.Format(n, phonenumbers.E164)
	if !E164Re.MatchString(e164) {
		return phoneNumber{}, invalidNumber(input, "international numbers have %d to %d digits after '+'", e164MinDigits, e164MaxDigits)
	}
	p := phoneNumber{e164: e164, class: ClassUnknown}
	if phonenumbers.IsValidNumber(n) {
		p.class = classOf(phonenumbers.GetNumberType(n))
		p.country = phonenumbers.GetRegionCodeForNumber(n)
	}
	if p.country == "" {
		// Invalid numbers still belong to the country of their calling code (the main one for shared codes).
		p.country = phonenumbers.GetRegionCodeForCountryCode(int(n.GetCountryCode()))
	}
	return p, nil
}

// foldInput maps what a phone keypad or a copy from a web page may produce onto ASCII: full-width forms (what an
// East Asian input method types), Arabic-Indic digits, no-break spaces and typographic dashes. Any other
// non-ASCII rune, and any control character, is refused: nothing else can be part of a number or a user name.
func foldInput(input string) (string, error) {
	ascii := true
	for i := 0; i < len(input); i++ {
		c := input[i]
		if c >= 0x80 {
			ascii = false
			break
		}
		if c < 0x20 || c == 0x7f {
			return "", invalidNumber(input, "control character at byte %d", i)
		}
	}
	if ascii {
		return input, nil
	}
	var b strings.Builder
	b.Grow(len(input))
	for i, r := range input {
		switch {
		case r == 0xFFFD:
			return "", invalidNumber(input, "not valid UTF-8 at byte %d", i)
		case r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0):
			return "", invalidNumber(input, "control character at byte %d", i)
		case r < 0x80:
			b.WriteRune(r)
		case r >= 0xFF01 && r <= 0xFF5E: // full-width ASCII: "＋４４" → "+44"
			b.WriteRune(r - 0xFEE0)
		case r >= 0x0660 && r <= 0x0669: // Arabic-Indic digits
			b.WriteRune('0' + r - 0x0660)
		case r >= 0x06F0 && r <= 0x06F9: // Extended Arabic-Indic (Persian, Urdu)
			b.WriteRune('0' + r - 0x06F0)
		case r == 0x3000 || r == 0x00A0 || r == 0x2007 || r == 0x202F: // ideographic and no-break spaces
			b.WriteByte(' ')
		case r >= 0x2010 && r <= 0x2015 || r == 0x2212 || r == 0x30FC: // hyphens, dashes, minus, prolonged sound mark
			b.WriteByte('-')
		default:
			return "", invalidNumber(input, "character %q at byte %d cannot be part of a number or a user name", r, i)
		}
	}
	return b.String(), nil
}
