package webhook

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"strings"
	"testing"
)

// TestDocWebhookExample keeps the webhook section of docs/configuration.md true: its example decodes into Event
// with no unknown field and names a real event type, and the signature recipe it gives is what Sign computes.
func TestDocWebhookExample(t *testing.T) {
	b, err := os.ReadFile("../../docs/configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	i := strings.Index(doc, "`webhook`: call progress")
	if i < 0 {
		t.Fatal("no webhook section in docs/configuration.md")
	}
	sec := doc[i:]
	start := strings.Index(sec, "```json\n")
	if start < 0 {
		t.Fatal("no example in the webhook section")
	}
	example := strings.TrimSpace(sec[start+len("```json\n") : start+strings.Index(sec[start:], "\n```\n")])
	dec := json.NewDecoder(strings.NewReader(example))
	dec.DisallowUnknownFields()
	var ev Event
	if err := dec.Decode(&ev); err != nil {
		t.Fatalf("example %s: %v", example, err)
	}
	if ev.Type != EventRinging && ev.Type != EventAnswered && ev.Type != EventEnded {
		t.Errorf("example type %q is not an event type", ev.Type)
	}
	for _, name := range []string{HeaderEvent, HeaderDelivery, HeaderTimestamp, HeaderSignature, EventRinging, EventAnswered, EventEnded} {
		if !strings.Contains(sec, name) {
			t.Errorf("the webhook section does not mention %s", name)
		}
	}
	secret, ts, body := []byte("s3cret"), "1732190400", []byte(example)
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(ts + "." + string(body)))
	if want := "v1=" + hex.EncodeToString(m.Sum(nil)); Sign(secret, ts, body) != want {
		t.Errorf("Sign = %s, the documented recipe gives %s", Sign(secret, ts, body), want)
	}
}
