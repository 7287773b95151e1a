package control

import (
	"fmt"
	"io"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// NewLogger builds the daemon's logger. The level is atomic so that a reload
// can change it without rebuilding the logger everyone already holds.
func NewLogger(w io.Writer, level zap.AtomicLevel, format string) (*zap.Logger, error) {
	encCfg := zap.NewProductionEncoderConfig()
	encCfg.TimeKey = "ts"
	encCfg.EncodeTime = zapcore.ISO8601TimeEncoder
	encCfg.EncodeDuration = zapcore.StringDurationEncoder
	var enc zapcore.Encoder
	switch format {
	case "", "console":
		encCfg.EncodeLevel = zapcore.CapitalLevelEncoder
		enc = zapcore.NewConsoleEncoder(encCfg)
	case "json":
		enc = zapcore.NewJSONEncoder(encCfg)
	default:
		return nil, fmt.Errorf("unknown log format %q (want console or json)", format)
	}
	core := zapcore.NewCore(enc, zapcore.Lock(zapcore.AddSync(w)), level)
	return zap.New(core, zap.ErrorOutput(zapcore.Lock(zapcore.AddSync(w)))), nil
}

// ParseLevel turns a configured level name into a zap level.
func ParseLevel(name string) (zapcore.Level, error) {
	var l zapcore.Level
	if name == "" {
		return zapcore.InfoLevel, nil
	}
	if err := l.UnmarshalText([]byte(name)); err != nil {
		return l, fmt.Errorf("unknown log level %q (want debug, info, warn or error)", name)
	}
	return l, nil
}
