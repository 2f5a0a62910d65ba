package signal

import (
	"bytes"
	"encoding/json"
	"os"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/patchbay/patchbay/wire"
)

// docExample is one JSON line of a ```json block in docs/signalling.md with the section it sits in.
type docExample struct {
	section string
	line    string
}

func docExamples(t *testing.T) ([]docExample, string) {
	t.Helper()
	b, err := os.ReadFile("../../docs/signalling.md")
	if err != nil {
		t.Fatal(err)
	}
	var out []docExample
	section, inJSON := "", false
	for _, l := range strings.Split(string(b), "\n") {
		switch {
		case strings.HasPrefix(l, "## "):
			section = strings.TrimPrefix(l, "## ")
		case l == "```json":
			inJSON = true
		case l == "```":
			inJSON = false
		case inJSON && strings.TrimSpace(l) != "":
			out = append(out, docExample{section, l})
		}
	}
	return out, string(b)
}

func keysOf(t *testing.T, raw []byte) []string {
	t.Helper()
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatalf("%s: %v", raw, err)
	}
	var k []string
	for key := range m {
		k = append(k, key)
	}
	sort.Strings(k)
	return k
}

// TestDocExamples keeps docs/signalling.md true: every example is a message with only known fields; every
// browser→server example passes validation; every server→browser example is what Encode writes for it (same
// keys: nothing the server never sends, nothing it always sends left out).
func TestDocExamples(t *testing.T) {
	examples, _ := docExamples(t)
	if len(examples) < 20 {
		t.Fatalf("only %d examples found in docs/signalling.md", len(examples))
	}
	for _, ex := range examples {
		dec := json.NewDecoder(strings.NewReader(ex.line))
		dec.DisallowUnknownFields()
		var m Message
		if err := dec.Decode(&m); err != nil {
			t.Errorf("%s: example %s: %v", ex.section, ex.line, err)
			continue
		}
		switch ex.section {
		case "Browser → server":
			if _, err := Validate(m); err != nil {
				t.Errorf("browser example %s is refused: %v", ex.line, err)
			}
		case "Server → browser":
			if m.Type == TypeCandidate {
				t.Errorf("the server sends no candidate messages, but the doc shows %s", ex.line)
			}
			enc, err := Encode(m)
			if err != nil {
				t.Fatal(err)
			}
			if got, want := keysOf(t, enc), keysOf(t, []byte(ex.line)); strings.Join(got, ",") != strings.Join(want, ",") {
				t.Errorf("server example %s: Encode writes keys %v, the doc shows %v", ex.line, got, want)
			}
			if m.Type == TypeError && m.CallID != "" && wire.EndsCall(m.Error) != m.Final {
				t.Errorf("server example %s: final must be %v", ex.line, wire.EndsCall(m.Error))
			}
		}
	}
}

// TestDocFinalCodesTable checks the "Errors that end a call" table against wire.
func TestDocFinalCodesTable(t *testing.T) {
	_, doc := docExamples(t)
	rows := regexp.MustCompile("(?m)^\\| `(\\w+)` \\| `(\\w+)` \\((\\d+)\\) \\|$").FindAllStringSubmatch(doc, -1)
	got := map[string]string{}
	for _, r := range rows {
		got[r[1]] = r[2]
		if want := wire.CauseCode(r[2]); r[3] != itoa(want) {
			t.Errorf("doc gives %s code %s, wire %d", r[2], r[3], want)
		}
	}
	for _, code := range wire.FinalCodes() {
		if got[code] != wire.CauseForCode(code) {
			t.Errorf("doc table: %s → %q, wire says %q", code, got[code], wire.CauseForCode(code))
		}
		delete(got, code)
	}
	for code := range got {
		t.Errorf("doc table lists %s as final; wire does not", code)
	}
	if !bytes.Contains([]byte(doc), []byte("`signalling_lost` 41")) {
		t.Error("doc does not list the signalling_lost cause")
	}
}

func itoa(n int) string {
	b, _ := json.Marshal(n)
	return string(b)
}

// docSection returns the text of the "## title" section of the doc.
func docSection(t *testing.T, doc, title string) string {
	t.Helper()
	i := strings.Index(doc, "\n## "+title+"\n")
	if i < 0 {
		t.Fatalf("docs/signalling.md has no section %q", title)
	}
	rest := doc[i+1:]
	if j := strings.Index(rest[3:], "\n## "); j >= 0 {
		rest = rest[:j+3]
	}
	return rest
}

// restOnlyCodes are the codes only the REST API sends (documented in its OpenAPI document).
var restOnlyCodes = []string{wire.CodeBadRequest, wire.CodeNotFound, wire.CodeNotMapped, wire.CodeConflict}

// TestDocErrorCodesTable: the error table of docs/signalling.md lists exactly the signalling codes of package
// wire, and a code that closes the connection names the close status the server uses.
func TestDocErrorCodesTable(t *testing.T) {
	_, doc := docExamples(t)
	sec := docSection(t, doc, "Error codes")
	rows := regexp.MustCompile("(?m)^\\| `(\\w+)` \\| [^|]*(?:\\\\\\|[^|]*)*\\| ([^|]*) \\| `\\{").FindAllStringSubmatch(sec, -1)
	listed := map[string]bool{}
	for _, r := range rows {
		code, closes := r[1], r[2]
		if listed[code] {
			t.Errorf("doc lists %s twice", code)
		}
		listed[code] = true
		if !slices.Contains(wire.Codes, code) {
			t.Errorf("doc lists error code %s, which package wire does not define", code)
		}
		if m := regexp.MustCompile(`\((\d{4})\)`).FindStringSubmatch(closes); m != nil {
			want := itoa(closeStatus(code))
			if code == wire.CodeTooManyConnections {
				want = itoa(closeTryAgainLater)
			}
			if m[1] != want {
				t.Errorf("doc: %s closes with %s, the server with %s", code, m[1], want)
			}
		}
	}
	for _, code := range wire.Codes {
		if !listed[code] && !slices.Contains(restOnlyCodes, code) {
			t.Errorf("wire code %s is missing from the error table of docs/signalling.md", code)
		}
	}
}

// TestDocHangupCauses: the "Hangup causes" section lists every cause of package wire with its Q.850 code.
func TestDocHangupCauses(t *testing.T) {
	_, doc := docExamples(t)
	sec := docSection(t, doc, "Hangup causes")
	pairs := regexp.MustCompile("`([a-z_]+)` (\\d+)").FindAllStringSubmatch(sec, -1)
	listed := map[string]bool{}
	for _, p := range pairs {
		listed[p[1]] = true
		if !slices.Contains(wire.Causes(), p[1]) {
			t.Errorf("doc lists cause %s, which package wire does not define", p[1])
		} else if itoa(wire.CauseCode(p[1])) != p[2] {
			t.Errorf("doc gives %s code %s, wire %d", p[1], p[2], wire.CauseCode(p[1]))
		}
	}
	for _, c := range wire.Causes() {
		if !listed[c] {
			t.Errorf("cause %s is missing from the Hangup causes section", c)
		}
	}
}
