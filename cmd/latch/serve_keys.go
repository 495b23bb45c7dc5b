package main

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/latchauth/latch/internal/keyseal"
	"github.com/latchauth/latch/server"
)

// envKEK carries the key-encryption key itself (never a flag: a flag's
// value shows in the process list).
const envKEK = "LATCH_KEY_ENCRYPTION_KEY"

// keyFlags are serve's signing-key settings.
type keyFlags struct {
	rotation, reload, publishLead time.Duration
	kekFile                       string
	name                          namer // how messages name a setting
}

// apply copies the timings into cfg (where a zero rotation disables it).
// It reports values that make no sense on their own; the server's
// validation checks how they combine.
func (k *keyFlags) apply(cfg *server.Config) error {
	n := k.name
	var errs []error
	if k.rotation < 0 {
		errs = append(errs, fmt.Errorf("%s %v must not be negative (0 disables scheduled rotation)", n("key-rotation"), k.rotation))
	}
	if k.publishLead <= 0 {
		errs = append(errs, fmt.Errorf("%s %v must be positive", n("key-publish-lead"), k.publishLead))
	}
	if k.reload <= 0 {
		errs = append(errs, fmt.Errorf("%s %v must be positive", n("key-reload-interval"), k.reload))
	}
	cfg.KeyRotation = k.rotation
	if k.rotation == 0 {
		cfg.KeyRotation = -1
	}
	cfg.KeyPublishLead = k.publishLead
	cfg.KeyReloadInterval = k.reload
	return errors.Join(errs...)
}

// sealer returns the key sealer from keys.encryption_key_file or
// LATCH_KEY_ENCRYPTION_KEY (nil, nil when neither is given). Errors never
// repeat the key; log takes the warning about a file others may read.
func (k *keyFlags) sealer(getenv func(string) string, log *slog.Logger) (*keyseal.Sealer, error) {
	text, from, err := readSecret("key-encryption key", k.kekFile, k.name("key-encryption-key-file"), envKEK, getenv, log)
	if err != nil || text == "" {
		return nil, err
	}
	if from != envKEK {
		from += " " + k.kekFile
	}
	kek, err := keyseal.Parse(text)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", from, err)
	}
	defer clear(kek)
	return keyseal.New(kek)
}

// explainKeyError turns server.New's key-encryption refusals into advice.
func explainKeyError(err error, n namer) error {
	switch {
	case errors.Is(err, server.ErrKeyEncryptionKeyRequired):
		return fmt.Errorf("%w: set %s to a file holding the key they were sealed with, or put the key in %s", err, n("key-encryption-key-file"), envKEK)
	case errors.Is(err, server.ErrKeyEncryptionKeyWrong):
		return fmt.Errorf("%w: check %s or %s", err, n("key-encryption-key-file"), envKEK)
	}
	return err
}
