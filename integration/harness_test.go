// Package integration drives the whole dev stack the way users do: through
// the official OpenAI Go SDK (only the base URL changed) and plain HTTP.
package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/lull-ai/lull/localstack/devstack"
	"github.com/lull-ai/lull/shared/lull"
)

// startStack starts a dev stack with a unique prefix and fast defaults.
func startStack(t *testing.T, cfg devstack.Config) *devstack.Stack {
	t.Helper()
	cfg.APIAddr = "127.0.0.1:0"
	cfg.Prefix = "it-" + strings.ToLower(lull.NewID("s")[2:10])
	if cfg.Logger == nil {
		level := slog.LevelWarn
		if os.Getenv("LULL_TEST_LOG") != "" {
			level = slog.LevelDebug
		}
		cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	}
	if cfg.Sim.TimeScale == 0 {
		cfg.Sim.TimeScale = 0.01
	}
	st, err := devstack.Start(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := st.Close(); err != nil {
			t.Logf("close: %v", err)
		}
	})
	return st
}

// generation is the subset of GET /v1/generation/{id} the tests read.
type generation struct {
	ID       string          `json:"id"`
	Status   string          `json:"status"`
	Model    string          `json:"model"`
	Attempts int             `json:"attempts"`
	Response json.RawMessage `json:"response"`
	Usage    *lull.Usage     `json:"usage"`
	Error    *lull.Failure   `json:"error"`
}

func getJSON(t *testing.T, url, key string, out any) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if out != nil && resp.StatusCode == http.StatusOK {
		if err := json.Unmarshal(body, out); err != nil {
			t.Fatalf("GET %s: %v: %s", url, err, body)
		}
	}
	return resp.StatusCode
}

func postJSON(t *testing.T, url, key, body string, out any) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			t.Fatalf("POST %s: %v: %s", url, err, data)
		}
	}
	return resp.StatusCode
}

// waitTerminal polls the API until every id is terminal, and returns them.
func waitTerminal(t *testing.T, st *devstack.Stack, key string, ids []string, timeout time.Duration) map[string]generation {
	t.Helper()
	out := map[string]generation{}
	deadline := time.Now().Add(timeout)
	for _, id := range ids {
		for {
			var g generation
			if code := getJSON(t, st.URL+"/v1/generation/"+id, key, &g); code != http.StatusOK {
				t.Fatalf("GET generation %s: %d", id, code)
			}
			if lull.Status(g.Status).Terminal() {
				out[id] = g
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("generation %s still %s after %s", id, g.Status, timeout)
			}
			time.Sleep(25 * time.Millisecond)
		}
	}
	return out
}

// waitFor polls cond until it holds or the timeout passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

func chatBody(model, content string, maxTokens int) string {
	return fmt.Sprintf(`{"model":%q,"max_tokens":%d,"messages":[{"role":"user","content":%q}]}`, model, maxTokens, content)
}
