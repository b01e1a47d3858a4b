package auth

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
)

// SecretEnv is the environment variable SecretFromEnv reads.
const SecretEnv = "NOOM_AUTH_SECRET"

// maxKeyFile is the largest secret or key file read, in bytes: any real one
// is far smaller, and a larger file is almost surely the wrong path.
const maxKeyFile = 64 << 10

// LoadSecretFile reads an HS256 secret from path (the -auth-secret-file
// flag). The secret is the file's text, less one trailing newline ("\n" or
// "\r\n"), and must be at least MinSecretLen bytes.
//
// A file readable by group or others is not refused, since container
// platforms mount secrets that way (Kubernetes 0644, Docker 0444 by
// default); instead warning says so, for the caller to log. warning is ""
// otherwise, and always on Windows, whose permission bits mean nothing
// here. Errors name the path, never the content.
func LoadSecretFile(path string) (secret []byte, warning string, err error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, "", fmt.Errorf("auth: secret file: %w", err)
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return nil, "", fmt.Errorf("auth: secret file: %w", err)
	}
	if !info.Mode().IsRegular() {
		return nil, "", fmt.Errorf("auth: secret file %s is not a regular file", path)
	}
	b, err := readCapped(f)
	if err != nil {
		return nil, "", fmt.Errorf("auth: secret file %s: %w", path, err)
	}
	b = trimNewline(b)
	if err := checkSecret(b); err != nil {
		return nil, "", fmt.Errorf("%w (file %s)", err, path)
	}
	if perm := info.Mode().Perm(); runtime.GOOS != "windows" && perm&0o077 != 0 {
		warning = fmt.Sprintf("auth secret file %s is readable by group or others (mode %04o); chmod 600 it", path, perm)
	}
	return b, warning, nil
}

// SecretFromEnv reads an HS256 secret from the NOOM_AUTH_SECRET environment
// variable: ok is false when the variable is not set. Set, it is treated as
// the text of a secret file (one trailing newline is dropped) and must be at
// least MinSecretLen bytes; set but empty or short is an error, not "no
// secret", so that a deployment that meant to set one does not silently run
// without it.
func SecretFromEnv() (secret []byte, ok bool, err error) {
	s, set := os.LookupEnv(SecretEnv)
	if !set {
		return nil, false, nil
	}
	b := trimNewline([]byte(s))
	if err := checkSecret(b); err != nil {
		return nil, false, fmt.Errorf("%w (from %s)", err, SecretEnv)
	}
	return b, true, nil
}

// trimNewline drops one trailing "\n" or "\r\n".
func trimNewline(b []byte) []byte {
	b, _ = bytes.CutSuffix(b, []byte("\n"))
	b, _ = bytes.CutSuffix(b, []byte("\r"))
	return b
}

// readCapped reads r to its end, refusing more than maxKeyFile bytes.
func readCapped(r io.Reader) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, maxKeyFile+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxKeyFile {
		return nil, fmt.Errorf("larger than %d KiB: is this the right file?", maxKeyFile>>10)
	}
	return b, nil
}

// LoadPublicKeyFile reads the key that verifies ES256 or RS256 tokens from
// a PEM file. The first PEM block that holds a key is used: "PUBLIC KEY"
// (PKIX: ECDSA on P-256, or RSA of at least 2048 bits), "RSA PUBLIC KEY"
// (PKCS #1) or "CERTIFICATE" (its key; the certificate's dates, issuer and
// chain are not checked, it is only a container here). Certificates after a
// first certificate (its chain) are ignored; any other second key is
// refused, since picking one silently would surprise whoever meant to rotate
// keys. A private key is refused with a hint to derive the public key.
func LoadPublicKeyFile(path string) (crypto.PublicKey, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("auth: public key file: %w", err)
	}
	defer f.Close()
	data, err := readCapped(f)
	if err != nil {
		return nil, fmt.Errorf("auth: public key file %s: %w", path, err)
	}
	key, err := parsePublicKeyPEM(data)
	if err != nil {
		return nil, fmt.Errorf("auth: public key file %s: %w", path, err)
	}
	return key, nil
}

// parsePublicKeyPEM is LoadPublicKeyFile after the read.
func parsePublicKeyPEM(data []byte) (crypto.PublicKey, error) {
	var key crypto.PublicKey
	firstIsCert := false
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			break
		}
		switch block.Type {
		case "PUBLIC KEY", "RSA PUBLIC KEY", "CERTIFICATE":
		case "PRIVATE KEY", "EC PRIVATE KEY", "RSA PRIVATE KEY", "ENCRYPTED PRIVATE KEY":
			return nil, fmt.Errorf("holds a %q block, not a public key: give the public key only (openssl pkey -in key.pem -pubout)", block.Type)
		default:
			continue // e.g. "EC PARAMETERS"
		}
		if key != nil {
			if firstIsCert && block.Type == "CERTIFICATE" {
				continue // the rest of a chain: the first certificate is the one
			}
			return nil, errors.New("holds more than one public key; give one")
		}
		var err error
		switch block.Type {
		case "PUBLIC KEY":
			key, err = x509.ParsePKIXPublicKey(block.Bytes)
		case "RSA PUBLIC KEY":
			key, err = x509.ParsePKCS1PublicKey(block.Bytes)
		case "CERTIFICATE":
			var cert *x509.Certificate
			if cert, err = x509.ParseCertificate(block.Bytes); err == nil {
				key, firstIsCert = cert.PublicKey, true
			}
		}
		if err != nil {
			return nil, fmt.Errorf("bad %s block: %w", block.Type, err)
		}
	}
	if key == nil {
		return nil, errors.New("no PEM \"PUBLIC KEY\", \"RSA PUBLIC KEY\" or \"CERTIFICATE\" block")
	}
	if _, err := checkPublicKey(key); err != nil {
		return nil, err
	}
	return key, nil
}
