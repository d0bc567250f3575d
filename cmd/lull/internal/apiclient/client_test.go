package apiclient_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/lull-ai/lull/cmd/lull/internal/apiclient"
)

func TestNewValidates(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct{ url, key string }{{"ftp://x", "k"}, {"http://", "k"}, {"::", "k"}, {"http://127.0.0.1:1", ""}} {
		if _, err := apiclient.New(tt.url, tt.key, nil); err == nil {
			t.Errorf("New(%q, %q) accepted", tt.url, tt.key)
		}
	}
}

func TestErrors(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer sk-test" {
			t.Errorf("Authorization = %q", r.Header.Get("Authorization"))
		}
		switch r.URL.Path {
		case "/v1/generation/gen_missing":
			w.WriteHeader(http.StatusNotFound)
			_, _ = w.Write([]byte(`{"error":{"message":"No generation found.","type":"invalid_request_error","param":null,"code":"not_found"}}`))
		case "/v1/batches/batch_1/cancel":
			w.WriteHeader(http.StatusConflict)
			_, _ = w.Write([]byte(`{"error":{"message":"Batch is completed.","type":"invalid_request_error","param":"id","code":"conflict"}}`))
		default:
			w.WriteHeader(http.StatusBadGateway)
			_, _ = w.Write([]byte("<html>bad gateway</html>"))
		}
	}))
	t.Cleanup(srv.Close)
	c, err := apiclient.New(srv.URL+"/", "sk-test", nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	_, err = c.Generation(ctx, "gen_missing")
	var ae *apiclient.APIError
	if !errors.As(err, &ae) || ae.Status != 404 || ae.Code != "not_found" || ae.Message != "No generation found." {
		t.Errorf("404: %#v", err)
	}
	_, err = c.CancelBatch(ctx, "batch_1")
	if !apiclient.IsStatus(err, http.StatusConflict) || err.Error() != "API answered 409 conflict (param id): Batch is completed." {
		t.Errorf("409: %v", err)
	}
	_, err = c.Models(ctx)
	if !errors.As(err, &ae) || ae.Status != 502 || ae.Message != "<html>bad gateway</html>" {
		t.Errorf("502 without an envelope: %#v", err)
	}
}
