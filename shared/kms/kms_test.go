package kms_test

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	awskms "github.com/aws/aws-sdk-go-v2/service/kms"

	"github.com/lull-ai/lull/shared/kms"
	"github.com/lull-ai/lull/shared/lull"
)

// fakeKMS speaks KMS's JSON 1.1 protocol for Encrypt and Decrypt, with one
// AES-GCM key per key ID. A ciphertext names its key and binds the
// encryption context, as KMS's do: Decrypt with another context fails.
type fakeKMS struct {
	keys     map[string]cipher.AEAD
	throttle atomic.Bool
}

func newFakeKMS(t *testing.T, keyIDs ...string) *httptest.Server {
	f := &fakeKMS{keys: map[string]cipher.AEAD{}}
	for _, id := range keyIDs {
		k := make([]byte, 32)
		_, _ = rand.Read(k)
		b, _ := aes.NewCipher(k)
		f.keys[id], _ = cipher.NewGCM(b)
	}
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	return srv
}

func contextAAD(c map[string]string) []byte {
	keys := make([]string, 0, len(c))
	for k := range c {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b bytes.Buffer
	for _, k := range keys {
		b.WriteString(k + "=" + c[k] + ";")
	}
	return b.Bytes()
}

func fail(w http.ResponseWriter, code int, typ, msg string) {
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(map[string]string{"__type": typ, "message": msg})
}

func (f *fakeKMS) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if f.throttle.Load() {
		fail(w, 400, "ThrottlingException", "Rate exceeded")
		return
	}
	var in struct {
		KeyID             string            `json:"KeyId"`
		Plaintext         []byte            `json:"Plaintext"`
		CiphertextBlob    []byte            `json:"CiphertextBlob"`
		EncryptionContext map[string]string `json:"EncryptionContext"`
	}
	if err := json.NewDecoder(r.Body).Decode(&in); err != nil {
		fail(w, 400, "SerializationException", err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	switch strings.TrimPrefix(r.Header.Get("X-Amz-Target"), "TrentService.") {
	case "Encrypt":
		aead, ok := f.keys[in.KeyID]
		if !ok {
			fail(w, 400, "NotFoundException", "no key "+in.KeyID)
			return
		}
		nonce := make([]byte, aead.NonceSize())
		_, _ = rand.Read(nonce)
		blob := append([]byte{byte(len(in.KeyID))}, in.KeyID...)
		blob = append(blob, aead.Seal(nonce, nonce, in.Plaintext, contextAAD(in.EncryptionContext))...)
		_ = json.NewEncoder(w).Encode(map[string]any{"CiphertextBlob": blob, "KeyId": in.KeyID, "EncryptionAlgorithm": "SYMMETRIC_DEFAULT"})
	case "Decrypt":
		if len(in.CiphertextBlob) < 1 || len(in.CiphertextBlob) < 1+int(in.CiphertextBlob[0]) {
			fail(w, 400, "InvalidCiphertextException", "malformed")
			return
		}
		keyID := string(in.CiphertextBlob[1 : 1+int(in.CiphertextBlob[0])])
		aead, ok := f.keys[keyID]
		if !ok || (in.KeyID != "" && in.KeyID != keyID) {
			fail(w, 400, "IncorrectKeyException", "the ciphertext was not encrypted under this key")
			return
		}
		body := in.CiphertextBlob[1+len(keyID):]
		n := aead.NonceSize()
		if len(body) < n {
			fail(w, 400, "InvalidCiphertextException", "malformed")
			return
		}
		pt, err := aead.Open(nil, body[:n], body[n:], contextAAD(in.EncryptionContext))
		if err != nil {
			fail(w, 400, "InvalidCiphertextException", "")
			return
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"Plaintext": pt, "KeyId": keyID})
	default:
		fail(w, 400, "UnknownOperationException", r.Header.Get("X-Amz-Target"))
	}
}

func client(url string) *awskms.Client {
	return awskms.New(awskms.Options{
		Region: "us-east-1", BaseEndpoint: aws.String(url), RetryMaxAttempts: 1,
		Credentials: credentials.NewStaticCredentialsProvider("test", "test", ""),
	})
}

func TestSealer(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	srv := newFakeKMS(t, "key-a", "key-b")
	a, b := kms.New(client(srv.URL), "key-a"), kms.New(client(srv.URL), "key-b")
	secret := []byte("whsec_c2VjcmV0")

	sealed, err := a.Seal(ctx, secret, "wh_1")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(sealed, kms.Prefix) || strings.Contains(sealed, "c2VjcmV0") {
		t.Fatalf("sealed = %q", sealed)
	}
	again, _ := a.Seal(ctx, secret, "wh_1")
	if again == sealed {
		t.Error("two seals of one secret are equal")
	}
	t.Run("OK", func(t *testing.T) {
		got, err := a.Open(ctx, sealed, "wh_1")
		if err != nil || !bytes.Equal(got, secret) {
			t.Fatalf("Open = %q, %v", got, err)
		}
	})
	t.Run("OtherObject", func(t *testing.T) {
		if _, err := a.Open(ctx, sealed, "wh_2"); err == nil {
			t.Fatal("a ciphertext opened for another webhook")
		}
	})
	t.Run("OtherKey", func(t *testing.T) {
		if _, err := b.Open(ctx, sealed, "wh_1"); err == nil {
			t.Fatal("a ciphertext opened under another key")
		}
	})
	t.Run("NotSealed", func(t *testing.T) {
		for _, v := range []string{"whsec_c2VjcmV0", kms.Prefix + "!!", kms.Prefix} {
			if _, err := a.Open(ctx, v, "wh_1"); err == nil {
				t.Errorf("Open(%q) succeeded", v)
			}
		}
	})
	t.Run("Throttled", func(t *testing.T) {
		srv := newFakeKMS(t, "key-a")
		s := kms.New(client(srv.URL), "key-a")
		srv.Config.Handler.(*fakeKMS).throttle.Store(true)
		if _, err := s.Seal(ctx, secret, "wh_1"); lull.ErrorCode(err) != lull.EUNAVAILABLE {
			t.Fatalf("throttled Seal: %v, want unavailable", err)
		}
	})
}
