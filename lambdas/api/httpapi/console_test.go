package httpapi_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/lull-ai/lull/lambdas/api/console"
	"github.com/lull-ai/lull/lambdas/api/httpapi"
	"github.com/lull-ai/lull/localstack/emutest"
	"github.com/lull-ai/lull/shared/lull"
	"github.com/lull-ai/lull/shared/s3"
)

// discardSender is a queue nobody reads: the console routes send nothing.
type discardSender struct{}

func (discardSender) Send(context.Context, []byte, string, time.Duration) error { return nil }

// TestConsoleMounted: the API serves the console without an API key, with
// its Content-Security-Policy, and the API's own routes still answer as
// before.
func TestConsoleMounted(t *testing.T) {
	t.Parallel()
	store, b := emutest.Table(t, "console")
	srv, err := httpapi.New(httpapi.Config{
		Generations: store, Keys: store, Blobs: s3.New(b.Clients.S3, "unused"),
		Queues: map[string]lull.Sender{"m": discardSender{}}, Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv)
	t.Cleanup(hs.Close)
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	for _, tt := range []struct {
		path   string
		status int
		csp    bool
		body   string
	}{
		{"/console/", http.StatusOK, true, "<title>lull console</title>"},
		{"/console/console.js", http.StatusOK, true, "sessionStorage"},
		{"/console", http.StatusMovedPermanently, true, ""},
		{"/v1/generations", http.StatusUnauthorized, false, "invalid_api_key"},
		{"/consolex", http.StatusNotFound, false, "unknown_url"},
	} {
		resp, err := noRedirect.Get(hs.URL + tt.path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tt.status || !strings.Contains(string(body), tt.body) {
			t.Errorf("GET %s: %d %.200s", tt.path, resp.StatusCode, body)
		}
		if got := resp.Header.Get("Content-Security-Policy") == console.ContentSecurityPolicy; got != tt.csp {
			t.Errorf("GET %s: console CSP present %v, want %v", tt.path, got, tt.csp)
		}
	}
}
