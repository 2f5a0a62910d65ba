package config

import (
	"errors"
	"fmt"
	"os"
	"reflect"
	"strings"

	"github.com/go-viper/mapstructure/v2"
	"github.com/spf13/pflag"
	"github.com/spf13/viper"
)

// EnvPrefix is the prefix of environment variables: PATCHBAY_ARI_PASSWORD sets ari.password.
const EnvPrefix = "PATCHBAY"

// LoadOptions says where to read from.
type LoadOptions struct {
	// File is a YAML file; empty means none (defaults, environment and flags only).
	File string
	// Flags, when set, override file and environment. A flag named like a key with dots turned into dashes
	// (--http-listen for http.listen) is bound to that key if it was set on the command line.
	Flags *pflag.FlagSet
	// LookupEnv reads the environment; nil means os.LookupEnv (tests pass their own).
	LookupEnv func(string) (string, bool)
}

// Load reads, fills in and validates the configuration.
func Load(opts LoadOptions) (*Config, error) {
	v := viper.New()
	v.SetConfigType("yaml")
	def := Defaults()
	fileOnly := map[string]bool{} // maps and lists of objects: the environment cannot spell them
	for key, val := range leafKeys(reflect.ValueOf(def), "") {
		v.SetDefault(key, val)
		if t := reflect.TypeOf(val); t.Kind() == reflect.Map || (t.Kind() == reflect.Slice && t.Elem().Kind() == reflect.Struct) {
			fileOnly[key] = true
		}
	}
	if opts.File != "" {
		f, err := os.Open(opts.File)
		if err != nil {
			return nil, fmt.Errorf("open config file %s: %w (pass --config with the right path, or omit it to use defaults and PATCHBAY_* variables)", opts.File, err)
		}
		err = v.ReadConfig(f)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("parse config file %s: %w", opts.File, err)
		}
	}
	lookup := opts.LookupEnv
	if lookup == nil {
		lookup = os.LookupEnv
	}
	var envErrs []error
	for _, key := range v.AllKeys() {
		env := EnvPrefix + "_" + strings.ToUpper(strings.NewReplacer(".", "_", "-", "_").Replace(key))
		if val, ok := lookup(env); ok {
			if fileOnly[key] {
				// The value is not quoted: it may hold secrets (auth.api_keys).
				envErrs = append(envErrs, fmt.Errorf("environment variable %s: %s is a map or a list of objects, read from the config file only; set it there (one entry of a map the file names can be set, e.g. PATCHBAY_AUTH_API_KEYS_CRM)", env, key))
				continue
			}
			v.Set(key, val)
		}
	}
	if len(envErrs) > 0 {
		return nil, errors.Join(envErrs...)
	}
	if opts.Flags != nil {
		// Flags go in last with Set, which in viper outranks everything read before.
		opts.Flags.Visit(func(f *pflag.Flag) {
			key := strings.ReplaceAll(f.Name, "-", ".")
			if !hasKey(v, key) {
				return
			}
			val := f.Value.String()
			if strings.HasSuffix(f.Value.Type(), "Slice") {
				val = strings.Trim(val, "[]")
			}
			v.Set(key, val)
		})
	}
	cfg := Defaults()
	md := &mapstructure.Metadata{}
	err := v.Unmarshal(&cfg, func(dc *mapstructure.DecoderConfig) {
		dc.Metadata = md
		dc.ErrorUnused = true
		dc.WeaklyTypedInput = true
		dc.DecodeHook = mapstructure.ComposeDecodeHookFunc(
			secretIsText,
			mapstructure.StringToTimeDurationHookFunc(),
			mapstructure.StringToSliceHookFunc(","),
		)
	})
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	cfg.fillDerived()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &cfg, nil
}

// secretIsText refuses a secret the YAML file wrote as a number or a boolean: read as one, it would silently
// change (0x1f becomes "31", 0123 "123", 1e5 "100000") and no longer match what the other side holds. The
// error does not quote the value.
func secretIsText(from, to reflect.Type, data any) (any, error) {
	if to != reflect.TypeFor[Secret]() {
		return data, nil
	}
	read := "a number"
	switch from.Kind() {
	case reflect.String, reflect.Slice, reflect.Map:
		return data, nil // text, or a shape the decoder itself refuses
	case reflect.Bool:
		read = "true or false"
	}
	return nil, fmt.Errorf("a secret must be text: quote it in the YAML file (unquoted, it was read as %s, which can change it)", read)
}

func hasKey(v *viper.Viper, key string) bool {
	for _, k := range v.AllKeys() {
		if k == key {
			return true
		}
	}
	return false
}

// leafKeys lists the dotted keys of a config struct with their default values, so that every key is known to
// viper (and so settable from the environment) even when the file does not mention it.
func leafKeys(v reflect.Value, prefix string) map[string]any {
	out := map[string]any{}
	t := v.Type()
	for i := range t.NumField() {
		f := t.Field(i)
		tag := f.Tag.Get("mapstructure")
		if tag == "" || tag == "-" {
			continue
		}
		key := tag
		if prefix != "" {
			key = prefix + "." + tag
		}
		fv := v.Field(i)
		if f.Type.Kind() == reflect.Struct && f.Type.PkgPath() != "time" {
			for k, val := range leafKeys(fv, key) {
				out[k] = val
			}
			continue
		}
		out[key] = fv.Interface()
	}
	return out
}
