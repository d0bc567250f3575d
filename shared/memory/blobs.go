package memory

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/lull-ai/lull/shared/lull"
)

// Blobs is an in-memory object store implementing lull.Blobs. It is also
// an http.Handler that serves the URLs PresignGet makes, so tests that
// fetch presigned URLs can serve it with httptest and pass the server's
// URL to SetBaseURL. The zero value is not usable; NewBlobs makes one. It
// is safe for concurrent use.
type Blobs struct {
	clock Clock
	key   []byte // signs presigned URLs

	mu      sync.Mutex
	fault   FaultFunc
	baseURL string
	objects map[string]blob
}

var (
	_ lull.Blobs   = (*Blobs)(nil)
	_ http.Handler = (*Blobs)(nil)
)

type blob struct {
	body        []byte
	contentType string
}

// NewBlobs returns an empty store whose presigned URLs expire by clock
// (RealClock when nil).
func NewBlobs(clock Clock) *Blobs {
	if clock == nil {
		clock = RealClock{}
	}
	key := make([]byte, 16)
	_, _ = rand.Read(key)
	return &Blobs{clock: clock, key: key, baseURL: "http://blobs.invalid", objects: map[string]blob{}}
}

// SetBaseURL sets the URL presigned URLs start with (the httptest server
// that serves b); http://blobs.invalid, which no client can reach, until then.
func (b *Blobs) SetBaseURL(u string) {
	b.mu.Lock()
	b.baseURL = strings.TrimRight(u, "/")
	b.mu.Unlock()
}

// SetFault installs f (nil removes it); ops are the method names, the key
// is the object key.
func (b *Blobs) SetFault(f FaultFunc) {
	b.mu.Lock()
	b.fault = f
	b.mu.Unlock()
}

func (b *Blobs) begin(op, key string) error {
	b.mu.Lock()
	f := b.fault
	b.mu.Unlock()
	if f != nil {
		if err := f(op, key); err != nil {
			return err
		}
	}
	b.mu.Lock()
	return nil
}

func notFound(key string) error {
	return &lull.Error{Code: lull.ENOTFOUND, Message: "object not found", Err: fmt.Errorf("memory: get %s: no such key", key)}
}

// Put implements lull.Blobs.
func (b *Blobs) Put(_ context.Context, key string, body []byte, contentType string) error {
	if err := b.begin("Put", key); err != nil {
		return err
	}
	defer b.mu.Unlock()
	b.objects[key] = blob{body: slices.Clone(body), contentType: contentType}
	return nil
}

// Get implements lull.Blobs.
func (b *Blobs) Get(_ context.Context, key string) ([]byte, error) {
	if err := b.begin("Get", key); err != nil {
		return nil, err
	}
	defer b.mu.Unlock()
	o, ok := b.objects[key]
	if !ok {
		return nil, notFound(key)
	}
	return slices.Clone(o.body), nil
}

// Open implements lull.Blobs.
func (b *Blobs) Open(_ context.Context, key string) (io.ReadCloser, error) {
	if err := b.begin("Open", key); err != nil {
		return nil, err
	}
	defer b.mu.Unlock()
	o, ok := b.objects[key]
	if !ok {
		return nil, notFound(key)
	}
	return io.NopCloser(bytes.NewReader(slices.Clone(o.body))), nil
}

// Delete implements lull.Blobs.
func (b *Blobs) Delete(_ context.Context, key string) error {
	if err := b.begin("Delete", key); err != nil {
		return err
	}
	defer b.mu.Unlock()
	delete(b.objects, key)
	return nil
}

// PutStream implements lull.Blobs. The object appears only once r is read
// to its end.
func (b *Blobs) PutStream(ctx context.Context, key string, r io.Reader, contentType string) (int64, error) {
	if err := b.begin("PutStream", key); err != nil {
		return 0, err
	}
	b.mu.Unlock()
	body, err := io.ReadAll(r)
	if err != nil {
		return 0, fmt.Errorf("memory: put %s: %w", key, err)
	}
	b.mu.Lock()
	b.objects[key] = blob{body: body, contentType: contentType}
	b.mu.Unlock()
	return int64(len(body)), nil
}

func (b *Blobs) sign(key string, expires int64) string {
	mac := hmac.New(sha256.New, b.key)
	fmt.Fprintf(mac, "%s\x00%d", key, expires)
	return hex.EncodeToString(mac.Sum(nil))
}

// PresignGet implements lull.Blobs: the URL is BaseURL/<key> with an
// expiry and a signature that ServeHTTP checks.
func (b *Blobs) PresignGet(_ context.Context, key string, ttl time.Duration) (string, error) {
	if err := b.begin("PresignGet", key); err != nil {
		return "", err
	}
	defer b.mu.Unlock()
	exp := b.clock.Now().Add(ttl).Unix()
	q := url.Values{"expires": {strconv.FormatInt(exp, 10)}, "signature": {b.sign(key, exp)}}
	return b.baseURL + "/" + (&url.URL{Path: key}).EscapedPath() + "?" + q.Encode(), nil
}

// ServeHTTP serves GETs of presigned URLs: 403 for a bad signature or an
// expired URL, 404 for a missing object.
func (b *Blobs) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	key := strings.TrimPrefix(r.URL.Path, "/")
	exp, err := strconv.ParseInt(r.URL.Query().Get("expires"), 10, 64)
	if r.Method != http.MethodGet || err != nil || !hmac.Equal([]byte(r.URL.Query().Get("signature")), []byte(b.sign(key, exp))) ||
		b.clock.Now().Unix() > exp {
		http.Error(w, "AccessDenied", http.StatusForbidden)
		return
	}
	b.mu.Lock()
	o, ok := b.objects[key]
	b.mu.Unlock()
	if !ok {
		http.Error(w, "NoSuchKey", http.StatusNotFound)
		return
	}
	if o.contentType != "" {
		w.Header().Set("Content-Type", o.contentType)
	}
	w.Header().Set("Content-Length", strconv.Itoa(len(o.body)))
	_, _ = w.Write(o.body)
}

// Keys returns the keys stored, sorted, for assertions.
func (b *Blobs) Keys() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make([]string, 0, len(b.objects))
	for k := range b.objects {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
