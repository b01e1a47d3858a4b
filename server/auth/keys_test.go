package auth

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

func writeFile(t *testing.T, data []byte, mode os.FileMode) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(path, data, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil { // not subject to the umask
		t.Fatal(err)
	}
	return path
}

func TestLoadSecretFile(t *testing.T) {
	t.Parallel()
	s := string(testSecret)
	tests := []struct {
		name     string
		content  string
		mode     os.FileMode
		want     string // "" means an error
		warnings bool
	}{
		{"exact", s, 0o600, s, false},
		{"one newline trimmed", s + "\n", 0o600, s, false},
		{"CRLF trimmed", s + "\r\n", 0o400, s, false},
		{"only one newline trimmed", s + "\n\n", 0o600, s + "\n", false},
		{"spaces kept", " " + s + " \n", 0o600, " " + s + " ", false},
		{"short", s[:31] + "\n", 0o600, "", false},
		{"empty", "", 0o600, "", false},
		{"PEM", "-----BEGIN PUBLIC KEY-----\n" + s + "\n-----END PUBLIC KEY-----\n", 0o600, "", false},
		{"too big", strings.Repeat("x", maxKeyFile+1), 0o600, "", false},
		{"group readable", s, 0o640, s, true},
		{"world readable", s + "\n", 0o644, s, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			path := writeFile(t, []byte(tt.content), tt.mode)
			got, warning, err := LoadSecretFile(path)
			if tt.want == "" {
				if err == nil {
					t.Fatalf("accepted %q", got)
				}
				if len(tt.content) >= 16 && strings.Contains(err.Error(), tt.content[:16]) {
					t.Errorf("error %q holds the content", err)
				}
				if !strings.Contains(err.Error(), path) {
					t.Errorf("error %q does not name the file", err)
				}
				t.Log(err)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tt.want {
				t.Errorf("secret %q, want %q", got, tt.want)
			}
			wantWarning := tt.warnings && runtime.GOOS != "windows"
			if (warning != "") != wantWarning {
				t.Errorf("warning %q, want one: %v", warning, wantWarning)
			}
			if strings.Contains(warning, s) {
				t.Errorf("warning %q holds the secret", warning)
			}
		})
	}
	t.Run("missing", func(t *testing.T) {
		t.Parallel()
		if _, _, err := LoadSecretFile(filepath.Join(t.TempDir(), "nope")); err == nil {
			t.Fatal("no error for a missing file")
		}
	})
	t.Run("directory", func(t *testing.T) {
		t.Parallel()
		if _, _, err := LoadSecretFile(t.TempDir()); err == nil {
			t.Fatal("no error for a directory")
		}
	})
}

func TestSecretFromEnv(t *testing.T) {
	// t.Setenv: not parallel.
	s := string(testSecret)
	if err := os.Unsetenv(SecretEnv); err != nil {
		t.Fatal(err)
	}
	if got, ok, err := SecretFromEnv(); got != nil || ok || err != nil {
		t.Fatalf("unset: %q %v %v", got, ok, err)
	}
	for _, tt := range []struct {
		value, want string // want "": an error
	}{
		{s, s},
		{s + "\n", s},
		{"", ""},
		{s[:20], ""},
	} {
		t.Setenv(SecretEnv, tt.value)
		got, ok, err := SecretFromEnv()
		if tt.want == "" {
			if err == nil || ok {
				t.Errorf("%q: accepted (%v)", tt.value, ok)
			} else if tt.value != "" && strings.Contains(err.Error(), tt.value) {
				t.Errorf("error %q holds the value", err)
			}
			continue
		}
		if err != nil || !ok || string(got) != tt.want {
			t.Errorf("%q: got %q %v %v", tt.value, got, ok, err)
		}
	}
}

func pemBlock(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

func selfSigned(t *testing.T, pub, priv any) []byte {
	t.Helper()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "tokens"},
		NotBefore:    time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC),
		NotAfter:     time.Date(2001, 1, 1, 0, 0, 0, 0, time.UTC), // long expired: not checked
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, pub, priv)
	if err != nil {
		t.Fatal(err)
	}
	return pemBlock("CERTIFICATE", der)
}

func TestLoadPublicKeyFile(t *testing.T) {
	t.Parallel()
	ec, ec2, rk := testKeys(t)
	pkix := func(k any) []byte {
		der, err := x509.MarshalPKIXPublicKey(k)
		if err != nil {
			t.Fatal(err)
		}
		return pemBlock("PUBLIC KEY", der)
	}
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	small, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	ecDER, err := x509.MarshalECPrivateKey(ec)
	if err != nil {
		t.Fatal(err)
	}
	pkcs8, err := x509.MarshalPKCS8PrivateKey(rk)
	if err != nil {
		t.Fatal(err)
	}
	ecCert := selfSigned(t, &ec.PublicKey, ec)
	ecParams := []byte("-----BEGIN EC PARAMETERS-----\nBggqhkjOPQMBBw==\n-----END EC PARAMETERS-----\n")

	tests := []struct {
		name    string
		file    []byte
		wantAlg string // "" means an error
		signer  any    // signs a token the loaded key must accept
	}{
		{"EC PKIX", pkix(&ec.PublicKey), "ES256", ec},
		{"RSA PKIX", pkix(&rk.PublicKey), "RS256", rk},
		{"RSA PKCS1", pemBlock("RSA PUBLIC KEY", x509.MarshalPKCS1PublicKey(&rk.PublicKey)), "RS256", rk},
		{"EC certificate", ecCert, "ES256", ec},
		{"RSA certificate", selfSigned(t, &rk.PublicKey, rk), "RS256", rk},
		{"certificate chain", append(append([]byte{}, ecCert...), selfSigned(t, &ec2.PublicKey, ec2)...), "ES256", ec},
		{"EC parameters first", append(append([]byte{}, ecParams...), pkix(&ec.PublicKey)...), "ES256", ec},
		{"text around the block", append(append([]byte("my key:\n"), pkix(&ec.PublicKey)...), "bye\n"...), "ES256", ec},
		{"two keys", append(pkix(&ec.PublicKey), pkix(&ec2.PublicKey)...), "", nil},
		{"key then certificate", append(pkix(&ec.PublicKey), ecCert...), "", nil},
		{"P-384", pkix(&p384.PublicKey), "", nil},
		{"RSA 1024", pkix(&small.PublicKey), "", nil},
		{"EC private key", pemBlock("EC PRIVATE KEY", ecDER), "", nil},
		{"PKCS8 private key", pemBlock("PRIVATE KEY", pkcs8), "", nil},
		{"private key after public", append(pkix(&ec.PublicKey), pemBlock("PRIVATE KEY", pkcs8)...), "", nil},
		{"garbage DER", pemBlock("PUBLIC KEY", []byte("nonsense")), "", nil},
		{"no PEM", []byte("MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE"), "", nil},
		{"empty", nil, "", nil},
		{"only EC parameters", ecParams, "", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			path := writeFile(t, tt.file, 0o644)
			key, err := LoadPublicKeyFile(path)
			if tt.wantAlg == "" {
				if err == nil {
					t.Fatalf("accepted a %T", key)
				}
				t.Log(err)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			v := newVerifier(t, Config{PublicKey: key})
			if v.Algorithm() != tt.wantAlg {
				t.Fatalf("alg %s, want %s", v.Algorithm(), tt.wantAlg)
			}
			m := jwt.GetSigningMethod(tt.wantAlg)
			if _, err := v.Verify(sign(t, m, tt.signer, claims(nil)), now); err != nil {
				t.Fatalf("a token signed by the key's owner: %v", err)
			}
		})
	}
	t.Run("missing", func(t *testing.T) {
		t.Parallel()
		if _, err := LoadPublicKeyFile(filepath.Join(t.TempDir(), "nope")); err == nil {
			t.Fatal("no error for a missing file")
		}
	})
}
