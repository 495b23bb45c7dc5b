package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/latchauth/latch/internal/keyseal"
	"github.com/latchauth/latch/server"
)

// envKEK carries the key-encryption key itself (never a flag: a flag's
// value shows in the process list).
const envKEK = "LATCH_KEY_ENCRYPTION_KEY"

// keyFlags are serve's signing-key flags.
type keyFlags struct {
	rotation, reload time.Duration
	publishLead      autoDuration
	kekFile          string
}

// autoDuration is a duration flag whose zero means "derived from other
// settings"; it prints no default.
type autoDuration time.Duration

func (d *autoDuration) String() string {
	if *d == 0 {
		return ""
	}
	return time.Duration(*d).String()
}

func (d *autoDuration) Set(s string) error {
	v, err := time.ParseDuration(s)
	if err != nil {
		return errors.New("not a duration (e.g. 90m)")
	}
	*d = autoDuration(v)
	return nil
}

func (k *keyFlags) register(fs *flag.FlagSet) {
	fs.DurationVar(&k.rotation, "key-rotation", server.DefaultKeyRotation,
		"how long a signing key signs before the published next key takes over; 0 disables scheduled rotation (on demand only)")
	fs.Var(&k.publishLead, "key-publish-lead",
		"how long a new key is published in the JWKS before it signs; at least the JWKS max-age, and at least the refresh interval of any verifier that does not refetch on an unknown kid (default: JWKS max-age + 1h)")
	fs.DurationVar(&k.reload, "key-reload-interval", server.DefaultKeyReloadInterval,
		"how often the key ring is reloaded from the database and due key transitions applied")
	fs.StringVar(&k.kekFile, "key-encryption-key-file", "",
		"file holding the key-encryption key (32 random bytes, standard base64, e.g. from 'head -c32 /dev/urandom | base64') that seals private signing keys at rest; or give the key itself in "+envKEK)
}

// apply copies the timings into cfg (where zero means the default and a
// negative rotation disables it). It reports flag values that make no sense
// on their own; the server's validation checks how they combine.
func (k *keyFlags) apply(cfg *server.Config) error {
	var errs []error
	if k.rotation < 0 {
		errs = append(errs, fmt.Errorf("--key-rotation %v must not be negative (0 disables scheduled rotation)", k.rotation))
	}
	if k.publishLead < 0 {
		errs = append(errs, fmt.Errorf("--key-publish-lead %v must not be negative (0 means the JWKS max-age + 1h)", k.publishLead))
	}
	if k.reload <= 0 {
		errs = append(errs, fmt.Errorf("--key-reload-interval %v must be positive", k.reload))
	}
	cfg.KeyRotation = k.rotation
	if k.rotation == 0 {
		cfg.KeyRotation = -1
	}
	cfg.KeyPublishLead = time.Duration(k.publishLead)
	cfg.KeyReloadInterval = k.reload
	return errors.Join(errs...)
}

// sealer returns the key sealer from --key-encryption-key-file or
// LATCH_KEY_ENCRYPTION_KEY (nil, nil when neither is given). Errors never
// repeat the key.
func (k *keyFlags) sealer(getenv func(string) string) (*keyseal.Sealer, error) {
	envText := getenv(envKEK)
	var text, from string
	switch {
	case k.kekFile != "" && envText != "":
		return nil, fmt.Errorf("both --key-encryption-key-file and %s are set; give the key-encryption key one way only", envKEK)
	case k.kekFile != "":
		b, err := readSmallFile(k.kekFile, 1024)
		if err != nil {
			return nil, fmt.Errorf("--key-encryption-key-file: %w", err)
		}
		text, from = string(b), "--key-encryption-key-file "+k.kekFile
	case envText != "":
		text, from = envText, envKEK
	default:
		return nil, nil
	}
	kek, err := keyseal.Parse(text)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", from, err)
	}
	defer clear(kek)
	return keyseal.New(kek)
}

// readSmallFile reads a file of at most limit bytes.
func readSmallFile(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("larger than %d bytes: not a key-encryption key file", limit)
	}
	return b, nil
}

// explainKeyError turns server.New's key-encryption refusals into advice.
func explainKeyError(err error) error {
	switch {
	case errors.Is(err, server.ErrKeyEncryptionKeyRequired):
		return fmt.Errorf("%w: set --key-encryption-key-file (or LATCH_KEY_ENCRYPTION_KEY_FILE) to a file holding the key they were sealed with, or put the key in %s", err, envKEK)
	case errors.Is(err, server.ErrKeyEncryptionKeyWrong):
		return fmt.Errorf("%w: check --key-encryption-key-file or %s", err, envKEK)
	}
	return err
}
