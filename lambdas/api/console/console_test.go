package console_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"github.com/lull-ai/lull/lambdas/api/console"
)

func TestHandler(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(console.Handler())
	t.Cleanup(srv.Close)
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

	tests := []struct {
		name, method, path string
		status             int
		ctype              string
		contains           string
	}{
		{"Index", http.MethodGet, "/console/", 200, "text/html", `<script src="console.js" defer></script>`},
		{"Script", http.MethodGet, "/console/console.js", 200, "text/javascript", "sessionStorage"},
		{"Style", http.MethodGet, "/console/console.css", 200, "text/css", ":focus-visible"},
		{"Icon", http.MethodGet, "/console/icon.svg", 200, "image/svg+xml", "<svg"},
		{"Head", http.MethodHead, "/console/", 200, "text/html", ""},
		{"Redirect", http.MethodGet, "/console", http.StatusMovedPermanently, "", ""},
		{"Missing", http.MethodGet, "/console/nope.js", 404, "", ""},
		{"Post", http.MethodPost, "/console/", http.StatusMethodNotAllowed, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			req, _ := http.NewRequest(tt.method, srv.URL+tt.path, nil)
			resp, err := noRedirect.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tt.status, body)
			}
			// Every answer, errors and redirects included, carries the policy.
			if got := resp.Header.Get("Content-Security-Policy"); got != console.ContentSecurityPolicy {
				t.Errorf("Content-Security-Policy = %q", got)
			}
			if got := resp.Header.Get("X-Content-Type-Options"); got != "nosniff" {
				t.Errorf("X-Content-Type-Options = %q", got)
			}
			if tt.ctype != "" && !strings.HasPrefix(resp.Header.Get("Content-Type"), tt.ctype) {
				t.Errorf("Content-Type = %q, want %s", resp.Header.Get("Content-Type"), tt.ctype)
			}
			if !strings.Contains(string(body), tt.contains) {
				t.Errorf("body lacks %q", tt.contains)
			}
			if tt.status == http.StatusMovedPermanently && resp.Header.Get("Location") != console.Prefix {
				t.Errorf("Location = %q", resp.Header.Get("Location"))
			}
		})
	}
}

// TestPolicyIsStrict holds the policy to what the issue asks: everything
// from the console's own origin, no inline script or style, no plugins, no
// framing, no base-URI tricks.
func TestPolicyIsStrict(t *testing.T) {
	t.Parallel()
	csp := console.ContentSecurityPolicy
	for _, want := range []string{"default-src 'self'", "script-src 'self'", "style-src 'self'", "object-src 'none'", "base-uri 'none'", "frame-ancestors 'none'"} {
		if !strings.Contains(csp, want) {
			t.Errorf("policy lacks %q: %s", want, csp)
		}
	}
	for _, bad := range []string{"unsafe-inline", "unsafe-eval", "unsafe-hashes", "*;", " http:", "data: 'self'"} {
		if strings.Contains(csp, bad) {
			t.Errorf("policy allows %q: %s", bad, csp)
		}
	}
}

// TestAssetsNeedNoInlineCode checks the markup has nothing the policy would
// block (inline scripts, style attributes, event-handler attributes,
// javascript: URLs) and loads nothing from another origin.
func TestAssetsNeedNoInlineCode(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(console.Handler())
	t.Cleanup(srv.Close)
	get := func(path string) string {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	html := get("/console/")
	for _, re := range []*regexp.Regexp{
		regexp.MustCompile(`<script(?:\s[^>]*)?>[^<]+</script>`),                   // inline script
		regexp.MustCompile(`<script(?:(?:\s(?:type|defer|async)(?:="[^"]*")?)*)>`), // script without src
		regexp.MustCompile(`\sstyle\s*=`),
		regexp.MustCompile(`<style`),
		regexp.MustCompile(`\son[a-z]+\s*=`),
		regexp.MustCompile(`javascript:`),
		regexp.MustCompile(`(?:src|href)="(?:https?:)?//`),
	} {
		if m := re.FindString(html); m != "" {
			t.Errorf("index.html has %q (pattern %s)", m, re)
		}
	}
	js := get("/console/console.js")
	for _, bad := range []string{"innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function", "localStorage", "console.log", ".style.", `"style"`, "setAttribute(\"on"} {
		if strings.Contains(js, bad) {
			t.Errorf("console.js uses %q", bad)
		}
	}
	for _, bad := range []string{"@import", "url(http", "url(//"} {
		if strings.Contains(get("/console/console.css"), bad) {
			t.Errorf("console.css uses %q", bad)
		}
	}
}
