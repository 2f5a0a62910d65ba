package config

import "time"

// Rooms configures conferences of browsers and phones (internal/rooms).
type Rooms struct {
	// Grace is how long a room lives after its last participant left; a room created through the API may set its
	// own. Default 60s.
	Grace time.Duration `mapstructure:"grace" yaml:"grace"`
	// MaxRooms bounds the live rooms of one instance. Default 1000.
	MaxRooms int `mapstructure:"max_rooms" yaml:"max_rooms"`
	// NumberTTL is the default lifetime of a number→room mapping made through the API without a ttl; 0 keeps
	// mappings until they are removed. Default 0.
	NumberTTL time.Duration `mapstructure:"number_ttl" yaml:"number_ttl"`
}

// DefaultRooms returns the rooms defaults.
func DefaultRooms() Rooms { return Rooms{Grace: 60 * time.Second, MaxRooms: 1000} }

func (c *Config) validateRooms(bad func(key, format string, args ...any)) {
	if c.Rooms.Grace < time.Second || c.Rooms.Grace > 24*time.Hour {
		bad("rooms.grace", "must be between 1s and 24h, e.g. 60s")
	}
	if c.Rooms.MaxRooms < 1 {
		bad("rooms.max_rooms", "must be at least 1")
	}
	if c.Rooms.NumberTTL < 0 {
		bad("rooms.number_ttl", "must not be negative; 0 keeps mappings until removed")
	}
}
