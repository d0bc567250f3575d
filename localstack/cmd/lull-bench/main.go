// Command lull-bench measures the dev stack and prints a table (`make bench`).
//
// accept: N slow chat requests sent by C concurrent clients to the API of a
// dev stack (in-process emulators, no workers so the accept path is measured
// alone); reports latency percentiles and accepted requests per second.
//
// end-to-end: N requests through the API, run by one worker on the simulator
// at a fast time scale; reports completed generations per second.
//
// webhooks: events delivered as signed POSTs to a local receiver.
//
// batch ingest: the batch Lambda's split job on a 50,000-line (~100 MB) input
// file, in a child process of its own; reports lines validated and enqueued
// per second and the child's peak memory (batch.go).
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lull-ai/lull/localstack/devstack"
	"github.com/lull-ai/lull/localstack/vllmsim"
	"github.com/lull-ai/lull/shared/dispatch"
	"github.com/lull-ai/lull/shared/lull"
	"github.com/lull-ai/lull/shared/sqs"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == childFlag {
		if err := ingestChild(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, "lull-bench child:", err)
			os.Exit(1)
		}
		return
	}
	n := flag.Int("n", 2000, "requests per scenario")
	c := flag.Int("c", 16, "concurrent clients")
	only := flag.String("only", "", `run one part: "requests" or "batch"`)
	lines := flag.Int("batch-lines", 50_000, "lines of the batch-ingest input file")
	lineBytes := flag.Int("batch-line-bytes", 2000, "bytes per line of the batch-ingest input file")
	flag.Parse()
	var err error
	if *only != "batch" {
		err = run(*n, *c)
	}
	if err == nil && *only != "requests" {
		err = runBatch(*lines, *lineBytes)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "lull-bench:", err)
		os.Exit(1)
	}
}

type result struct {
	name          string
	n             int
	p50, p90, p99 time.Duration
	perSec        float64
	errors        int
}

func run(n, c int) error {
	ctx := context.Background()
	quiet := slog.New(slog.DiscardHandler)
	var results []result

	st, err := devstack.Start(ctx, devstack.Config{APIAddr: "127.0.0.1:0", Prefix: "bench-accept", Workers: -1, Logger: quiet, SweepEvery: time.Hour})
	if err != nil {
		return err
	}
	r, err := accept(st.URL, n, c)
	st.Close()
	if err != nil {
		return err
	}
	results = append(results, r)

	st, err = devstack.Start(ctx, devstack.Config{
		APIAddr: "127.0.0.1:0", Prefix: "bench-e2e", Workers: 1, WorkerConcurrency: 64, Logger: quiet,
		Sim: vllmsim.Config{TimeScale: 0.001, MaxNumSeqs: 256}, SweepEvery: time.Hour,
	})
	if err != nil {
		return err
	}
	r, err = endToEnd(st, n/4, c)
	st.Close()
	if err != nil {
		return err
	}
	results = append(results, r)

	st, err = devstack.Start(ctx, devstack.Config{APIAddr: "127.0.0.1:0", Prefix: "bench-hooks", Workers: -1, Logger: quiet, SweepEvery: time.Hour})
	if err != nil {
		return err
	}
	r, err = webhooks(st, n/2)
	st.Close()
	if err != nil {
		return err
	}
	results = append(results, r)

	fmt.Printf("\n%-12s %7s %10s %10s %10s %12s %7s\n", "scenario", "n", "p50", "p90", "p99", "per second", "errors")
	for _, r := range results {
		fmt.Printf("%-12s %7d %10s %10s %10s %12.0f %7d\n", r.name, r.n, r.p50.Round(10*time.Microsecond), r.p90.Round(10*time.Microsecond), r.p99.Round(10*time.Microsecond), r.perSec, r.errors)
	}
	fmt.Printf("\n(%d concurrent clients; in-process emulators. accept: client-observed latency of POST /v1/slow/chat/completions;\n"+
		" end-to-end: accepted → completed on the simulator at 1000x speed; webhooks: event enqueued → signed POST\n"+
		" received by a local receiver, one dispatcher as the dev stack runs it)\n", c)
	return nil
}

func runBatch(lines, lineBytes int) error {
	r, err := batchIngest(context.Background(), lines, lineBytes)
	if err != nil {
		return err
	}
	fmt.Printf("\n%-13s %7s %9s %9s %14s %14s %13s\n", "scenario", "lines", "MB", "seconds", "lines/second", "peak RSS MiB", "heap sys MiB")
	fmt.Printf("%-13s %7d %9.1f %9.1f %14.0f %14.1f %13.1f\n", "batch ingest", r.Lines, float64(r.Bytes)/1e6, r.Seconds,
		float64(r.Lines)/r.Seconds, float64(r.PeakRSSKiB)/1024, r.HeapSysMiB)
	fmt.Println("\n(batch ingest: the batch Lambda's split job in its own process — validate the whole file while streaming it\n" +
		" from S3, then store every line in DynamoDB and enqueue it with SendMessageBatch — against the in-process emulators;\n" +
		" peak RSS is the child's VmHWM)")
	return nil
}

func post(client *http.Client, url string, i int) (string, error) {
	body := fmt.Sprintf(`{"model":"lull-sim-1","max_tokens":16,"messages":[{"role":"user","content":"benchmark request %d"}]}`, i)
	req, _ := http.NewRequest(http.MethodPost, url+"/v1/slow/chat/completions", bytes.NewBufferString(body))
	req.Header.Set("Authorization", "Bearer sk-lull-dev")
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusAccepted {
		return "", fmt.Errorf("status %d: %s", resp.StatusCode, data)
	}
	var acc struct{ ID string }
	return acc.ID, json.Unmarshal(data, &acc)
}

// parallel calls f(0) … f(n-1) from c goroutines.
func parallel(n, c int, f func(i int)) {
	var next atomic.Int64
	var wg sync.WaitGroup
	for range c {
		wg.Go(func() {
			for i := int(next.Add(1)) - 1; i < n; i = int(next.Add(1)) - 1 {
				f(i)
			}
		})
	}
	wg.Wait()
}

func accept(url string, n, c int) (result, error) {
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: c}}
	// Warm up connections and caches.
	for i := range c {
		if _, err := post(client, url, -i); err != nil {
			return result{}, err
		}
	}
	lat := make([]time.Duration, n)
	var errs atomic.Int64
	start := time.Now()
	parallel(n, c, func(i int) {
		t0 := time.Now()
		if _, err := post(client, url, i); err != nil {
			errs.Add(1)
		}
		lat[i] = time.Since(t0)
	})
	elapsed := time.Since(start)
	slices.Sort(lat)
	return result{name: "accept", n: n, p50: lat[n/2], p90: lat[n*9/10], p99: lat[n*99/100],
		perSec: float64(n) / elapsed.Seconds(), errors: int(errs.Load())}, nil
}

func endToEnd(st *devstack.Stack, n, c int) (result, error) {
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: c}}
	start := time.Now()
	ids := make([]string, n)
	var errs atomic.Int64
	parallel(n, c, func(i int) {
		id, err := post(client, st.URL, i)
		if err != nil {
			errs.Add(1)
		}
		ids[i] = id
	})
	lat := make([]time.Duration, 0, n)
	deadline := time.Now().Add(5 * time.Minute)
	for _, id := range ids {
		if id == "" {
			continue
		}
		for {
			g, err := st.Store.Get(context.Background(), id)
			if err == nil && g.Status.Terminal() {
				if g.Status != lull.StatusCompleted {
					errs.Add(1)
				}
				lat = append(lat, g.CompletedAt.Sub(g.CreatedAt))
				break
			}
			if time.Now().After(deadline) {
				return result{}, fmt.Errorf("end-to-end: %s not done after 5 minutes", id)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	elapsed := time.Since(start)
	slices.Sort(lat)
	m := len(lat)
	if m == 0 {
		return result{}, fmt.Errorf("end-to-end: nothing completed")
	}
	return result{name: "end-to-end", n: n, p50: lat[m/2], p90: lat[m*9/10], p99: lat[m*99/100],
		perSec: float64(m) / elapsed.Seconds(), errors: int(errs.Load())}, nil
}

// webhooks measures the dispatcher: n completed generations are announced at
// once and a local receiver counts signed deliveries.
func webhooks(st *devstack.Stack, n int) (result, error) {
	ctx := context.Background()
	var got atomic.Int64
	var mu sync.Mutex
	arrived := map[string]time.Time{}
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		mu.Lock()
		if _, dup := arrived[r.Header.Get("webhook-id")]; !dup {
			arrived[r.Header.Get("webhook-id")] = time.Now()
			got.Add(1)
		}
		mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	defer recv.Close()
	var wh struct{ ID string }
	req, _ := http.NewRequest(http.MethodPost, st.URL+"/v1/webhooks", bytes.NewBufferString(fmt.Sprintf(`{"url":%q}`, recv.URL)))
	req.Header.Set("Authorization", "Bearer sk-lull-dev")
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return result{}, err
	}
	_ = json.NewDecoder(resp.Body).Decode(&wh)
	resp.Body.Close()
	events := sqs.New(st.Clients.SQS, st.EventsURL)
	now := time.Now().UTC().Truncate(time.Millisecond)
	gens := make([]*lull.Generation, n)
	for i := range gens {
		g := &lull.Generation{ID: lull.NewID("gen"), Tenant: "dev", Model: "lull-sim-1", Endpoint: lull.EndpointChat,
			Status: lull.StatusQueued, CreatedAt: now, ExpiresAt: now.Add(time.Hour), WebhookID: wh.ID,
			Request: json.RawMessage(`{"model":"lull-sim-1","messages":[{"role":"user","content":"hi"}]}`)}
		if _, _, err := st.Store.Create(ctx, g, ""); err != nil {
			return result{}, err
		}
		if _, err := st.Store.Start(ctx, g.ID, "bench", now, now.Add(time.Minute)); err != nil {
			return result{}, err
		}
		key := lull.OutputKey("dev", g.ID, 1)
		if err := st.Blobs.Put(ctx, key, []byte(`{"object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"hello"}}]}`), "application/json"); err != nil {
			return result{}, err
		}
		done, err := st.Store.Finish(ctx, g.ID, lull.StatusCompleted, lull.Outcome{At: now, ResponseKey: key, Usage: &lull.Usage{PromptTokens: 1, CompletionTokens: 1, TotalTokens: 2}})
		if err != nil {
			return result{}, err
		}
		gens[i] = done
	}
	start := time.Now()
	sent := make([]time.Time, n)
	for i, g := range gens {
		sent[i] = time.Now()
		if err := dispatch.Announce(ctx, events, g); err != nil {
			return result{}, err
		}
	}
	deadline := time.Now().Add(3 * time.Minute)
	for got.Load() < int64(n) {
		if time.Now().After(deadline) {
			return result{}, fmt.Errorf("webhooks: %d of %d delivered after 3 minutes", got.Load(), n)
		}
		time.Sleep(10 * time.Millisecond)
	}
	elapsed := time.Since(start)
	mu.Lock()
	defer mu.Unlock()
	lat := make([]time.Duration, 0, n)
	for i, g := range gens {
		lat = append(lat, arrived[lull.EventFor(g).ID].Sub(sent[i]))
	}
	slices.Sort(lat)
	return result{name: "webhooks", n: n, p50: lat[n/2], p90: lat[n*9/10], p99: lat[n*99/100], perSec: float64(n) / elapsed.Seconds()}, nil
}
