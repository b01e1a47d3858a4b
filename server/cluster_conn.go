package main

import (
	"errors"
	"net/url"
	"os"
	"strconv"
	"strings"

	"github.com/nats-io/nats.go"
)

// How a node reaches NATS: the credentials and TLS of -nats, and keeping
// them out of logs and errors.
//
// nats.go takes credentials in the URL itself (nats://user:pass@host,
// nats://token@host), so the URL is a secret: every log line and error
// that shows it shows redactURL's version, and errors whose text comes from
// nats.go (which quotes the URL when it cannot parse it) go through
// redactErr. url.URL.Redacted is not enough: it hides passwords but shows a
// token, which is the URL's user name.

// redacted replaces a password or token.
const redacted = "xxxxx"

// validateNATS checks the -nats credential and TLS flags.
func (c *Config) validateNATS() []error {
	var errs []error
	if c.NATS == "" && (c.NATSCreds != "" || c.NATSCA != "" || c.NATSCert != "" || c.NATSKey != "") {
		errs = append(errs, errors.New("-nats-creds, -nats-ca, -nats-cert and -nats-key are for the -nats server: give its URL"))
	}
	if (c.NATSCert == "") != (c.NATSKey == "") {
		errs = append(errs, errors.New("-nats-cert and -nats-key go together"))
	}
	for _, f := range []struct{ flag, file string }{
		{"nats-creds", c.NATSCreds}, {"nats-ca", c.NATSCA}, {"nats-cert", c.NATSCert}, {"nats-key", c.NATSKey},
	} {
		if f.file == "" {
			continue
		}
		if _, err := os.Stat(f.file); err != nil { // now, rather than at the first connect
			errs = append(errs, errors.New("-"+f.flag+": "+err.Error()))
		}
	}
	return errs
}

// natsOptions are the connection options the -nats-* flags add: a
// credentials file (JWT and NKey seed), the CA that signs the server's
// certificate (which makes TLS required), a client certificate.
func (c *Config) natsOptions() []nats.Option {
	var opts []nats.Option
	if c.NATSCreds != "" {
		opts = append(opts, nats.UserCredentials(c.NATSCreds))
	}
	if c.NATSCA != "" {
		opts = append(opts, nats.RootCAs(c.NATSCA))
	}
	if c.NATSCert != "" {
		opts = append(opts, nats.ClientCert(c.NATSCert, c.NATSKey))
	}
	return opts
}

// splitUserinfo splits one server URL (scheme optional, as nats.go takes
// it) around its userinfo, the part before the last '@'. ok is false
// when there is none. A NATS URL has no path, so an '@' anywhere after
// the scheme ends the userinfo: a password with an unescaped '/' is still
// found.
func splitUserinfo(u string) (prefix, userinfo, rest string, ok bool) {
	start := 0
	if i := strings.Index(u, "://"); i >= 0 {
		start = i + len("://")
	}
	at := strings.LastIndexByte(u[start:], '@')
	if at < 0 {
		return u, "", "", false
	}
	return u[:start], u[start : start+at], u[start+at:], true
}

// redactURL returns a -nats URL list (comma-separated) with every password
// and token replaced by xxxxx; user names stay, so the log still says who
// connects.
func redactURL(urls string) string {
	parts := strings.Split(urls, ",")
	for i, u := range parts {
		prefix, userinfo, rest, ok := splitUserinfo(u)
		if !ok {
			continue
		}
		if user, _, hasPass := strings.Cut(userinfo, ":"); hasPass {
			parts[i] = prefix + user + ":" + redacted + rest
		} else {
			parts[i] = prefix + redacted + rest // a lone user name is a token to nats.go
		}
	}
	return strings.Join(parts, ",")
}

// urlSecrets returns the passwords and tokens in a -nats URL list, as
// written, percent-decoded and as %q would escape them (url.Parse's errors
// quote the URL), longest first so that one secret inside another is not
// half replaced.
func urlSecrets(urls string) []string {
	var out []string
	for _, u := range strings.Split(urls, ",") {
		_, userinfo, _, ok := splitUserinfo(u)
		if !ok {
			continue
		}
		secret := userinfo
		if _, pass, hasPass := strings.Cut(userinfo, ":"); hasPass {
			secret = pass
		}
		if secret == "" {
			continue
		}
		forms := []string{secret}
		if dec, err := url.PathUnescape(secret); err == nil {
			forms = append(forms, dec)
		}
		for _, f := range forms {
			q := strconv.Quote(f)
			out = append(out, f, q[1:len(q)-1])
		}
	}
	for i := 1; i < len(out); i++ { // a handful: insertion sort by length, descending
		for j := i; j > 0 && len(out[j]) > len(out[j-1]); j-- {
			out[j], out[j-1] = out[j-1], out[j]
		}
	}
	return out
}

// redactedError is an error whose message has had secrets removed; Unwrap
// keeps errors.Is and errors.As working on the original.
type redactedError struct {
	msg string
	err error
}

func (e *redactedError) Error() string { return e.msg }
func (e *redactedError) Unwrap() error { return e.err }

// redactErr returns err with every password and token of urls removed
// from its message, or err itself when there is nothing to remove.
func redactErr(err error, urls string) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	clean := msg
	for _, s := range urlSecrets(urls) {
		clean = strings.ReplaceAll(clean, s, redacted)
	}
	if clean == msg {
		return err
	}
	return &redactedError{msg: clean, err: err}
}
