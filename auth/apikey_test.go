package auth

import (
	"strings"
	"testing"
)

func TestAPIKeys(t *testing.T) {
	keys, err := NewAPIKeys(map[string]string{
		"crm":     "crm-key-0123456789abcdef",
		"billing": "billing-key-0123456789abcdef",
	})
	if err != nil {
		t.Fatalf("NewAPIKeys: %v", err)
	}
	tests := []struct {
		presented string
		name      string
		ok        bool
	}{
		{"crm-key-0123456789abcdef", "crm", true},
		{"billing-key-0123456789abcdef", "billing", true},
		{"crm-key-0123456789abcdeF", "", false},
		{"crm-key-0123456789abcde", "", false},
		{"", "", false},
		{"crm", "", false},
	}
	for _, tt := range tests {
		name, ok := keys.Check(tt.presented)
		if name != tt.name || ok != tt.ok {
			t.Errorf("Check(%q) = %q, %v; want %q, %v", tt.presented, name, ok, tt.name, tt.ok)
		}
	}
	for _, e := range keys.entries {
		if strings.Contains(string(e.digest[:]), "crm-key") {
			t.Fatal("key stored in clear")
		}
	}
}

func TestNewAPIKeysRejects(t *testing.T) {
	tests := map[string]map[string]string{
		"short key":  {"a": "short"},
		"empty name": {"": "0123456789abcdef0123"},
		"duplicate":  {"a": "0123456789abcdef0123", "b": "0123456789abcdef0123"},
	}
	for name, in := range tests {
		if _, err := NewAPIKeys(in); err == nil {
			t.Errorf("%s: accepted", name)
		} else if strings.Contains(err.Error(), "0123456789abcdef") || strings.Contains(err.Error(), "short\"") {
			t.Errorf("%s: error leaks the key: %v", name, err)
		}
	}
	var nilKeys *APIKeys
	if _, ok := nilKeys.Check("x"); ok {
		t.Error("nil APIKeys accepted a key")
	}
}
