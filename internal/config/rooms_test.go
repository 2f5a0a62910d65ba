package config

import (
	"strings"
	"testing"
	"time"
)

func TestRoomsKeysValidated(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(*Config)
		key  string // "" when valid
	}{
		{"default", func(*Config) {}, ""},
		{"grace of the documented minimum", func(c *Config) { c.Rooms.Grace = time.Second }, ""},
		{"grace of the documented maximum", func(c *Config) { c.Rooms.Grace = 24 * time.Hour }, ""},
		{"grace below 1s", func(c *Config) { c.Rooms.Grace = 500 * time.Millisecond }, "rooms.grace"},
		{"no grace", func(c *Config) { c.Rooms.Grace = 0 }, "rooms.grace"},
		{"grace past 24h", func(c *Config) { c.Rooms.Grace = 25 * time.Hour }, "rooms.grace"},
		{"no rooms", func(c *Config) { c.Rooms.MaxRooms = 0 }, "rooms.max_rooms"},
		{"negative number TTL", func(c *Config) { c.Rooms.NumberTTL = -time.Second }, "rooms.number_ttl"},
	} {
		c := validBase()
		tc.edit(&c)
		err := c.Validate()
		switch {
		case tc.key == "" && err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case tc.key != "" && (err == nil || !strings.Contains(err.Error(), "config key "+tc.key+":")):
			t.Errorf("%s: error %v, want one naming %s", tc.name, err, tc.key)
		}
	}
}
