package console_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/browser"
	"github.com/chromedp/chromedp"

	"github.com/lull-ai/lull/localstack/devstack"
	"github.com/lull-ai/lull/localstack/vllmsim"
	"github.com/lull-ai/lull/shared/lull"
)

// The browser tests drive the console in headless Chromium (Debian's
// chromium package; localstack/scripts/browser.sh installs it) against a
// whole dev stack in this process. Without a browser they skip, unless
// LULL_REQUIRE_BROWSER is set (make test, CI), where they fail.
// Screenshots go to LULL_ARTIFACTS_DIR (default: the test's temp dir).

const testKey = "sk-console-test"

// findBrowser returns the browser to drive, or skips/fails the test.
func findBrowser(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("LULL_BROWSER"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome-stable", "google-chrome", "headless-shell"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("LULL_REQUIRE_BROWSER") != "" {
		t.Fatal("no Chromium found and LULL_REQUIRE_BROWSER is set: run localstack/scripts/browser.sh install (or set LULL_BROWSER)")
	}
	t.Skip("no Chromium found (localstack/scripts/browser.sh install); set LULL_REQUIRE_BROWSER=1 to fail instead")
	return ""
}

// artifacts returns the folder screenshots are kept in.
func artifacts(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("LULL_ARTIFACTS_DIR")
	if dir == "" {
		return t.TempDir()
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// page is one browser tab on the console, with the checks every step needs.
type page struct {
	t         *testing.T
	ctx       context.Context
	shots     string
	downloads string

	mu       sync.Mutex
	problems []string // uncaught exceptions, CSP violations, console errors
}

func newPage(t *testing.T) *page {
	t.Helper()
	exe := findBrowser(t)
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(exe), chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.WindowSize(1280, 860), chromedp.UserDataDir(t.TempDir()),
		chromedp.Flag("lang", "en-US"),
	)
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelCtx := chromedp.NewContext(alloc)
	t.Cleanup(func() { cancelCtx(); cancelAlloc() })
	p := &page{t: t, ctx: ctx, shots: artifacts(t), downloads: t.TempDir()}
	// The first call starts the browser (no timeout on it: a timeout would
	// stop the browser with it). Downloads go to a folder the test reads.
	if _, err := chromedp.CallBrowser(ctx, browser.SetDownloadBehavior, browser.SetDownloadBehaviorParams{
		Behavior: browser.SetDownloadBehaviorBehaviorAllow, DownloadPath: p.downloads}); err != nil {
		t.Fatalf("start %s: %v", exe, err)
	}
	messages := chromedp.Console(ctx)
	go func() {
		for m, err := range messages {
			if err != nil {
				return
			}
			switch m.Type {
			case chromedp.ConsoleException, chromedp.ConsoleError, chromedp.ConsoleWarning:
				p.problem(m.String())
			}
		}
	}()
	return p
}

func (p *page) problem(s string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.problems = append(p.problems, s)
}

// run runs browser actions with a deadline and fails the test on error,
// with a screenshot of the moment.
func (p *page) run(what string, timeout time.Duration, steps ...chromedp.Action[chromedp.Void]) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, timeout)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		p.shot("failed-" + strings.ReplaceAll(what, " ", "-"))
		p.t.Fatalf("%s: %v", what, err)
	}
}

// shot saves a screenshot of the viewport as console-NAME.png.
func (p *page) shot(name string) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, 10*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		p.t.Logf("screenshot %s: %v", name, err)
		return
	}
	path := filepath.Join(p.shots, "console-"+name+".png")
	if err := os.WriteFile(path, png, 0o644); err != nil {
		p.t.Fatal(err)
	}
	p.t.Logf("screenshot: %s", path)
}

// eval evaluates a JavaScript expression in the page.
func eval[T any](p *page, expr string) T {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, 10*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		p.t.Fatalf("eval %s: %v", expr, err)
	}
	return v
}

// until polls a JavaScript expression until it is true.
func (p *page) until(what string, timeout time.Duration, expr string) {
	p.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ctx, cancel := context.WithTimeout(p.ctx, 5*time.Second)
		ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool](expr))
		cancel()
		if err == nil && ok {
			return
		}
		if time.Now().After(deadline) {
			p.shot("timeout-" + strings.ReplaceAll(what, " ", "-"))
			p.t.Fatalf("timed out after %s waiting for %s (last error %v)", timeout, what, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// audit fails the test for controls a keyboard or screen-reader user could
// not use: form fields without a label, buttons and links without a name,
// clickable elements that are not buttons or links.
func (p *page) audit(view string) {
	p.t.Helper()
	problems := eval[[]string](p, `(() => {
		const bad = [];
		for (const el of document.querySelectorAll("input, select, textarea")) {
			if (el.type !== "hidden" && !(el.labels && el.labels.length) && !el.getAttribute("aria-label")) bad.push("unlabelled " + el.tagName + "#" + el.id);
		}
		for (const el of document.querySelectorAll("button, a[href]")) {
			if (!(el.textContent.trim() || el.getAttribute("aria-label"))) bad.push("nameless " + el.tagName + " " + el.outerHTML.slice(0, 80));
		}
		for (const el of document.querySelectorAll("[onclick], div[tabindex]:not([tabindex='-1']), span[tabindex], td[tabindex], tr[tabindex]")) {
			bad.push("not a real control: " + el.outerHTML.slice(0, 80));
		}
		if (!document.querySelector("h1")) bad.push("no heading");
		return bad;
	})()`)
	for _, pr := range problems {
		p.t.Errorf("%s: %s", view, pr)
	}
}

// checkClean fails the test on any exception, console error or CSP
// violation the page reported.
func (p *page) checkClean() {
	p.t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, s := range p.problems {
		p.t.Errorf("page problem: %s", s)
	}
	p.problems = nil
}

// api calls the stack's API as the test's tenant.
func api(t *testing.T, st *devstack.Stack, method, path string, body, out any) int {
	t.Helper()
	var rd io.Reader
	if body != nil {
		data, _ := json.Marshal(body)
		rd = bytes.NewReader(data)
	}
	req, _ := http.NewRequest(method, st.URL+path, rd)
	req.Header.Set("Authorization", "Bearer "+testKey)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 != 2 {
		t.Fatalf("%s %s: %d %s", method, path, resp.StatusCode, data)
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			t.Fatalf("%s %s: %v: %s", method, path, err, data)
		}
	}
	return resp.StatusCode
}

func startStack(t *testing.T) *devstack.Stack {
	t.Helper()
	level := slog.LevelWarn
	if os.Getenv("LULL_TEST_LOG") != "" {
		level = slog.LevelDebug
	}
	st, err := devstack.Start(context.Background(), devstack.Config{
		APIAddr: "127.0.0.1:0", Prefix: "console-" + strings.ToLower(lull.NewID("s")[2:10]),
		Sim:    devstackSim(),
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	if err := st.AddKey(context.Background(), testKey, "console-test"); err != nil {
		t.Fatal(err)
	}
	return st
}

// generation is what the tests read of GET /v1/generation/{id}.
type generation struct {
	ID       string `json:"id"`
	Status   string `json:"status"`
	Response struct {
		Choices []struct {
			Message struct {
				Content string `json:"content"`
			} `json:"message"`
		} `json:"choices"`
	} `json:"response"`
}

func waitGeneration(t *testing.T, st *devstack.Stack, id string) generation {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		var g generation
		api(t, st, http.MethodGet, "/v1/generation/"+id, nil, &g)
		if lull.Status(g.Status).Terminal() {
			return g
		}
		if time.Now().After(deadline) {
			t.Fatalf("generation %s still %s", id, g.Status)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestConsoleInBrowser signs in, opens a generation's response, watches a
// batch reach completed and downloads its results, retries a failed webhook
// delivery and sees the new attempt, and draws the usage chart — with
// screenshots of each step and no script error or CSP violation on the way.
func TestConsoleInBrowser(t *testing.T) {
	p := newPage(t) // first: skips (or fails) before starting a stack when there is no browser
	st := startStack(t)
	start := time.Now()

	// A generation submitted through the API, completed before the browser looks.
	var q struct{ ID string }
	api(t, st, http.MethodPost, "/v1/slow/chat/completions",
		map[string]any{"model": "lull-sim-1", "max_tokens": 12, "messages": []map[string]string{{"role": "user", "content": "console test prompt"}}}, &q)
	g := waitGeneration(t, st, q.ID)
	if g.Status != "completed" || len(g.Response.Choices) == 0 {
		t.Fatalf("setup generation %s ended %s", g.ID, g.Status)
	}
	want := g.Response.Choices[0].Message.Content

	t.Run("SignIn", func(t *testing.T) {
		p.t = t
		p.run("open console", 20*time.Second, chromedp.Navigate(st.URL+"/console/"), chromedp.WaitVisible(chromedp.ID("api-key")))
		// The key field has focus on load; Enter submits (keyboard only).
		focused := eval[string](p, `document.activeElement ? document.activeElement.id : ""`)
		if focused != "api-key" {
			t.Errorf("focus on load is on %q, want the API key field", focused)
		}
		p.shot("1-sign-in")
		p.audit("sign in")
		p.run("sign in", 10*time.Second, chromedp.SendKeys(chromedp.ID("api-key"), testKey+"\r"))
		p.until("generations list", 10*time.Second, `document.querySelector("#view-title")?.textContent === "Generations"`)
		stored := eval[string](p, `sessionStorage.getItem("lull.apiKey")`)
		href := eval[string](p, `location.href + " " + document.cookie + " " + localStorage.length`)
		if stored != testKey {
			t.Errorf("sessionStorage holds %q", stored)
		}
		if strings.Contains(href, testKey) || strings.Contains(href, "sk-") {
			t.Errorf("the key leaks into the URL or cookies: %s", href)
		}
	})

	t.Run("GenerationResponse", func(t *testing.T) {
		p.t = t
		link := fmt.Sprintf(`a[href="#/generations/%s"]`, g.ID)
		p.until("the submitted generation in the list", 10*time.Second, fmt.Sprintf(`!!document.querySelector(%q)`, link))
		// Filter by status with the form, as a user would.
		p.run("filter completed", 10*time.Second,
			chromedp.SetValue(chromedp.ID("status-filter"), "completed"), chromedp.Click(chromedp.CSS(`#view form button[type="submit"]`)))
		p.until("filtered list", 10*time.Second, fmt.Sprintf(`location.hash === "#/generations?status=completed" && !!document.querySelector(%q)`, link))
		p.shot("2-generations")
		p.audit("generations")
		p.run("open generation", 10*time.Second, chromedp.Click(chromedp.CSS(link)))
		p.until("response text", 10*time.Second, `!!document.querySelector("#response-text")`)
		text := eval[string](p, `document.querySelector("#response-text").textContent`)
		request := eval[string](p, `document.querySelector("#request-json").textContent`)
		if text != want {
			t.Errorf("response shown %q, want %q", text, want)
		}
		if !strings.Contains(request, "console test prompt") {
			t.Errorf("request shown lacks the prompt: %s", request)
		}
		p.shot("3-generation")
		p.audit("generation")
	})

	t.Run("BatchProgress", func(t *testing.T) {
		p.t = t
		const lines = 40
		// Each engine request waits 1.5 s of wall time, so the page sees the
		// batch before it ends and must follow it live.
		st.Sim.SetDelay(1500 * time.Millisecond)
		defer st.Sim.SetDelay(0)
		batchID := createBatch(t, st, lines)
		p.run("open batch", 10*time.Second, chromedp.Navigate(st.URL+"/console/#/batches/"+batchID))
		p.until("batch page", 10*time.Second, `!!document.querySelector("#batch-progress")`)
		first := eval[string](p, `document.querySelector("#batch-status").textContent`)
		if first == "completed" {
			t.Fatalf("batch already completed on first render; the test cannot see progress")
		}
		p.shot("4-batch-running")
		p.until("batch completed with a full bar", 60*time.Second, fmt.Sprintf(
			`document.querySelector("#batch-status")?.textContent === "completed" && document.querySelector("#batch-progress").value === %d && document.querySelector("#batch-progress").max === %d`, lines, lines))
		p.shot("5-batch-completed")
		p.audit("batch")
		// Download the results through the page (fetch with the bearer key, saved from a blob URL).
		p.until("download button", 10*time.Second, `!!document.querySelector("#batch-files button")`)
		p.run("download", 10*time.Second, chromedp.Click(chromedp.CSS("#batch-files button")))
		path := filepath.Join(p.downloads, batchID+"-output.jsonl")
		deadline := time.Now().Add(15 * time.Second)
		for {
			data, err := os.ReadFile(path)
			if err == nil && bytes.Count(data, []byte("\n")) == lines {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("download %s: %v (%d bytes)", path, err, len(data))
			}
			time.Sleep(100 * time.Millisecond)
		}
	})

	t.Run("WebhookRetry", func(t *testing.T) {
		p.t = t
		rcv := newReceiver(t)
		var wh struct{ ID string }
		api(t, st, http.MethodPost, "/v1/webhooks", map[string]any{"url": rcv.URL, "description": "browser test"}, &wh)
		var gen struct{ ID string }
		api(t, st, http.MethodPost, "/v1/slow/chat/completions", map[string]any{"model": "lull-sim-1", "max_tokens": 4,
			"messages": []map[string]string{{"role": "user", "content": "webhook test"}}, "metadata": map[string]string{"webhook_id": wh.ID}}, &gen)
		// The receiver answers 429 with a one-hour Retry-After, so no
		// automatic retry comes during the test: only the button's.
		var del struct{ ID string }
		deadline := time.Now().Add(30 * time.Second)
		for del.ID == "" {
			var list struct {
				Data []struct {
					ID       string
					Attempts []struct {
						StatusCode *int `json:"status_code"`
					}
				}
			}
			api(t, st, http.MethodGet, "/v1/webhooks/"+wh.ID+"/deliveries", nil, &list)
			if len(list.Data) == 1 && len(list.Data[0].Attempts) == 1 {
				del.ID = list.Data[0].ID
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("no failed first attempt: %+v", list)
			}
			time.Sleep(50 * time.Millisecond)
		}
		p.run("open webhook", 10*time.Second, chromedp.Navigate(st.URL+"/console/#/webhooks/"+wh.ID))
		attempts := fmt.Sprintf(`document.querySelectorAll('ol[aria-label="Attempts of %s"] li')`, del.ID)
		p.until("failed attempt shown", 10*time.Second, attempts+`.length === 1 && `+attempts+`[0].textContent.includes("429")`)
		p.shot("6-webhook-failed")
		rcv.setOK()
		p.run("retry", 10*time.Second, chromedp.Click(chromedp.CSS(fmt.Sprintf(`button[data-delivery="%s"]`, del.ID))))
		p.until("second attempt 200", 20*time.Second, attempts+`.length === 2 && `+attempts+`[1].textContent.includes("200")`)
		p.shot("7-webhook-retried")
		p.audit("webhook")
		if ids := rcv.ids(); len(ids) != 2 || ids[0] != ids[1] {
			t.Errorf("receiver got webhook-ids %v, want the same one twice", ids)
		}
	})

	t.Run("Usage", func(t *testing.T) {
		p.t = t
		p.run("open usage", 10*time.Second, chromedp.Navigate(st.URL+"/console/#/usage"))
		p.until("chart with today's bar", 20*time.Second,
			`[...document.querySelectorAll("#usage-chart rect.bar")].some(r => parseFloat(r.getAttribute("height")) > 0) && document.querySelectorAll("#usage-table tbody tr").length === 1`)
		p.shot("8-usage")
		p.audit("usage")
	})

	p.t = t
	p.checkClean()
	t.Logf("browser test steps took %s", time.Since(start).Round(time.Millisecond))
}

// createBatch uploads n chat lines and starts a batch over them.
func createBatch(t *testing.T, st *devstack.Stack, n int) string {
	t.Helper()
	var buf bytes.Buffer
	for i := range n {
		fmt.Fprintf(&buf, `{"custom_id":"c%d","method":"POST","url":"/v1/chat/completions","body":{"model":"lull-sim-1","max_tokens":4,"messages":[{"role":"user","content":"line %d"}]}}`+"\n", i, i)
	}
	var form bytes.Buffer
	mw := newMultipart(&form, buf.Bytes())
	req, _ := http.NewRequest(http.MethodPost, st.URL+"/v1/files", &form)
	req.Header.Set("Authorization", "Bearer "+testKey)
	req.Header.Set("Content-Type", mw)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var f struct{ ID string }
	err = json.NewDecoder(resp.Body).Decode(&f)
	resp.Body.Close()
	if err != nil || f.ID == "" {
		t.Fatalf("upload: %d %v", resp.StatusCode, err)
	}
	var b struct{ ID string }
	api(t, st, http.MethodPost, "/v1/batches", map[string]any{"input_file_id": f.ID, "endpoint": "/v1/chat/completions", "completion_window": "24h"}, &b)
	return b.ID
}

// receiver is a webhook endpoint that answers 429 (Retry-After: one hour)
// until setOK, then 200, and records every delivery's webhook-id.
type receiver struct {
	*httptest.Server
	mu   sync.Mutex
	ok   bool
	seen []string
}

func newReceiver(t *testing.T) *receiver {
	r := &receiver{}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		_, _ = io.Copy(io.Discard, req.Body)
		r.mu.Lock()
		defer r.mu.Unlock()
		r.seen = append(r.seen, req.Header.Get("webhook-id"))
		if !r.ok {
			w.Header().Set("Retry-After", "3600")
			w.WriteHeader(http.StatusTooManyRequests)
			return
		}
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(r.Close)
	return r
}

func (r *receiver) setOK() { r.mu.Lock(); r.ok = true; r.mu.Unlock() }

func (r *receiver) ids() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.seen...)
}

// newMultipart writes a /v1/files form (purpose batch) holding content and
// returns its Content-Type.
func newMultipart(w io.Writer, content []byte) string {
	mw := multipart.NewWriter(w)
	_ = mw.WriteField("purpose", "batch")
	fw, _ := mw.CreateFormFile("file", "lines.jsonl")
	_, _ = fw.Write(content)
	_ = mw.Close()
	return mw.FormDataContentType()
}

// devstackSim is the simulator's configuration: 100× real time.
func devstackSim() vllmsim.Config { return vllmsim.Config{TimeScale: 0.01} }
