package config

import (
	"fmt"
	"log/slog"

	"go.uber.org/zap/zapcore"
)

const redacted = "<redacted>"

// Secret is key material. Every way of printing or marshaling it yields
// "<redacted>", so a Config can be logged or dumped without leaking it.
type Secret []byte

func (s Secret) String() string   { return redacted }
func (s Secret) GoString() string { return `config.Secret("` + redacted + `")` }

// Format covers every fmt verb, including %x and %d, which would
// otherwise print the bytes.
func (s Secret) Format(f fmt.State, verb rune) {
	if verb == 'v' && f.Flag('#') {
		fmt.Fprint(f, s.GoString())
		return
	}
	fmt.Fprint(f, redacted)
}

// MarshalJSON implements json.Marshaler.
func (s Secret) MarshalJSON() ([]byte, error) { return []byte(`"` + redacted + `"`), nil }

// MarshalText implements encoding.TextMarshaler.
func (s Secret) MarshalText() ([]byte, error) { return []byte(redacted), nil }

// MarshalYAML implements yaml.Marshaler.
func (s Secret) MarshalYAML() (any, error) { return redacted, nil }

// LogValue implements slog.LogValuer.
func (s Secret) LogValue() slog.Value { return slog.StringValue(redacted) }

// MarshalLogObject implements zapcore.ObjectMarshaler; zap.Any picks it
// before its []byte case.
func (s Secret) MarshalLogObject(enc zapcore.ObjectEncoder) error {
	enc.AddString("secret", redacted)
	return nil
}
