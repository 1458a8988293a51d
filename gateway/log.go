package gateway

import (
	"io"
	"strings"
	"time"

	"github.com/rs/zerolog"
)

// NewLogger builds the process logger from the log: section: zerolog JSON
// lines by default, a console writer for humans.
func NewLogger(cfg LogConfig, w io.Writer) zerolog.Logger {
	level, err := zerolog.ParseLevel(strings.ToLower(cfg.Level))
	if err != nil || cfg.Level == "" {
		level = zerolog.InfoLevel
	}
	if cfg.Format == "console" {
		w = zerolog.ConsoleWriter{Out: w, TimeFormat: time.TimeOnly}
	}
	// The level is the process-wide one, so that a reload can change it
	// for every logger the gateway handed out.
	zerolog.SetGlobalLevel(level)
	return zerolog.New(w).With().Timestamp().Logger()
}
