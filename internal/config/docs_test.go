package config

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// TestEveryKeyDocumented keeps docs/configuration.md in step with the Config struct: an admin must find every key.
func TestEveryKeyDocumented(t *testing.T) {
	b, err := os.ReadFile("../../docs/configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	for key := range leafKeys(reflect.ValueOf(Defaults()), "") {
		if !strings.Contains(doc, "`"+key+"`") {
			t.Errorf("docs/configuration.md does not document `%s`", key)
		}
	}
}

// TestDocExamplesLoad: every YAML example in docs/configuration.md is a valid configuration (with the two required
// secrets from the environment), so an admin can start from one.
func TestDocExamplesLoad(t *testing.T) {
	b, err := os.ReadFile("../../docs/configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	blocks := strings.Split(string(b), "```yaml\n")[1:]
	if len(blocks) == 0 {
		t.Fatal("no YAML example in docs/configuration.md")
	}
	env := env(map[string]string{"PATCHBAY_ARI_PASSWORD": testARIPass, "PATCHBAY_AUTH_TOKEN_SECRET": testToken})
	for i, block := range blocks {
		text, _, _ := strings.Cut(block, "```")
		file := filepath.Join(t.TempDir(), "example.yaml")
		if err := os.WriteFile(file, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := Load(LoadOptions{File: file, LookupEnv: env}); err != nil {
			t.Errorf("example %d does not load: %v\n%s", i+1, err, text)
		}
	}
}
