package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/lull-ai/lull/lambdas/batch/batchjob"
	"github.com/lull-ai/lull/localstack/devstack"
	"github.com/lull-ai/lull/localstack/emulators"
	"github.com/lull-ai/lull/localstack/extemu"
	"github.com/lull-ai/lull/shared/awsclients"
	"github.com/lull-ai/lull/shared/dynamodb"
	"github.com/lull-ai/lull/shared/lull"
	"github.com/lull-ai/lull/shared/s3"
	"github.com/lull-ai/lull/shared/sqs"
)

// The batch-ingest scenario: the parent starts a dev stack (its emulators)
// and stores a 50,000-line, ~100 MB input file and a validating batch; a
// child process, alone as the batch Lambda would be, runs the split job
// (validate while streaming, then store and enqueue every line) against the
// stack's endpoints and reports its own time and peak memory.

// ingestResult is what the child reports.
type ingestResult struct {
	Lines      int     `json:"lines"`
	Bytes      int64   `json:"bytes"`
	Seconds    float64 `json:"seconds"`
	PeakRSSKiB int64   `json:"peak_rss_kib"`
	HeapSysMiB float64 `json:"heap_sys_mib"`
}

// childFlag runs the split job instead of the benchmarks.
const childFlag = "-batch-ingest-child"

// inputLineOf returns line i of the benchmark input, padded to about size bytes.
func inputLineOf(i, size int) []byte {
	head := fmt.Sprintf(`{"custom_id":"req-%06d","method":"POST","url":"/v1/chat/completions","body":{"model":"lull-sim-1","max_tokens":64,"messages":[{"role":"user","content":"`, i)
	tail := `"}]}}` + "\n"
	pad := max(size-len(head)-len(tail), 1)
	words := strings.Repeat(fmt.Sprintf("line %d asks about idle gpus ", i), pad/20+1)[:pad]
	return []byte(head + words + tail)
}

// inputReader streams the n-line input file without holding it.
type inputReader struct {
	i, n, size int
	cur        []byte
}

func (r *inputReader) Read(p []byte) (int, error) {
	if len(r.cur) == 0 {
		if r.i == r.n {
			return 0, io.EOF
		}
		r.cur = inputLineOf(r.i, r.size)
		r.i++
	}
	n := copy(p, r.cur)
	r.cur = r.cur[n:]
	return n, nil
}

func batchIngest(ctx context.Context, lines, lineBytes int) (ingestResult, error) {
	quiet := slog.New(slog.DiscardHandler)
	cfg := devstack.Config{APIAddr: "127.0.0.1:0", Prefix: "bench-batch-" + strings.ToLower(lull.NewID("r")[2:8]), Workers: -1, Logger: quiet, SweepEvery: time.Hour}
	if ep, ok := extemu.FromEnv(); ok {
		// DynamoDB Local and fauxqs's SQS; S3 stays in-process, since
		// fauxqs refuses PutObject bodies of this size (S3 takes 5 GB).
		emu, err := emulators.Start()
		if err != nil {
			return ingestResult{}, err
		}
		defer emu.Close()
		cfg.Endpoints = awsclients.Endpoints{DynamoDB: ep.DynamoDB, SQS: ep.SQS, S3: emu.Endpoints.S3}
	}
	st, err := devstack.Start(ctx, cfg)
	if err != nil {
		return ingestResult{}, err
	}
	defer st.Close()
	now := time.Now().UTC()
	f := &lull.File{ID: lull.NewID("file"), Tenant: "dev", Purpose: lull.PurposeBatch, Filename: "bench.jsonl", CreatedAt: now}
	f.Key = lull.FileKey("dev", f.ID)
	if f.Bytes, err = st.Blobs.PutStream(ctx, f.Key, &inputReader{n: lines, size: lineBytes}, "application/jsonl"); err != nil {
		return ingestResult{}, err
	}
	if err := st.Store.CreateFile(ctx, f); err != nil {
		return ingestResult{}, err
	}
	b := &lull.Batch{ID: lull.NewID("batch"), Tenant: "dev", Endpoint: lull.EndpointChat, InputFileID: f.ID,
		CompletionWindow: "24h", Status: lull.BatchValidating, CreatedAt: now, ExpiresAt: now.Add(24 * time.Hour)}
	if err := st.Store.CreateBatch(ctx, b); err != nil {
		return ingestResult{}, err
	}

	self, err := os.Executable()
	if err != nil {
		return ingestResult{}, err
	}
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, self, childFlag, st.Endpoints.DynamoDB, st.Endpoints.SQS, st.Endpoints.S3,
		st.Table, st.Bucket, st.QueueURL, st.BatchURL, b.ID)
	cmd.Stdout, cmd.Stderr = &out, os.Stderr
	if err := cmd.Run(); err != nil {
		return ingestResult{}, fmt.Errorf("batch ingest child: %w: %s", err, out.String())
	}
	var res ingestResult
	if err := json.Unmarshal(out.Bytes(), &res); err != nil {
		return ingestResult{}, fmt.Errorf("batch ingest child said %q: %w", out.String(), err)
	}
	res.Bytes = f.Bytes

	// Check the work was done, not just timed.
	got, err := st.Store.GetBatch(ctx, b.ID)
	if err != nil {
		return ingestResult{}, err
	}
	visible, inFlight, err := sqs.New(st.Clients.SQS, st.QueueURL).Depth(ctx)
	if err != nil {
		return ingestResult{}, err
	}
	if got.Status != lull.BatchInProgress || got.Total != lines || got.Created != lines || !got.SplitDone || visible+inFlight != lines {
		return ingestResult{}, fmt.Errorf("batch after ingest: status %s total %d created %d split_done %v, %d messages queued; want %d",
			got.Status, got.Total, got.Created, got.SplitDone, visible+inFlight, lines)
	}
	return res, nil
}

// ingestChild is the child process: the batch Lambda's split job, timed.
func ingestChild(args []string) error {
	if len(args) != 8 {
		return fmt.Errorf("%s wants 8 arguments", childFlag)
	}
	ctx := context.Background()
	c, err := awsclients.New(ctx, awsclients.Endpoints{DynamoDB: args[0], SQS: args[1], S3: args[2]})
	if err != nil {
		return err
	}
	store := dynamodb.New(c.DynamoDB, args[3])
	log := slog.New(slog.DiscardHandler)
	if os.Getenv("LULL_BENCH_LOG") != "" {
		log = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	h, err := batchjob.New(batchjob.Config{
		Batches: store, Generations: store, BatchQueue: sqs.New(c.SQS, args[6]), Logger: log,
		Blobs: s3.New(c.S3, args[4]), Queues: map[string]lull.BatchSender{"lull-sim-1": sqs.New(c.SQS, args[5])},
		Concurrency: 32,
	})
	if err != nil {
		return err
	}
	start := time.Now()
	if err := h.Run(ctx, lull.BatchJob{Kind: lull.BatchJobSplit, BatchID: args[7], Tenant: "dev"}); err != nil {
		return err
	}
	b, err := store.GetBatch(ctx, args[7])
	if err != nil {
		return err
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	res := ingestResult{Lines: b.Created, Seconds: time.Since(start).Seconds(), PeakRSSKiB: peakRSS(), HeapSysMiB: float64(ms.HeapSys) / (1 << 20)}
	return json.NewEncoder(os.Stdout).Encode(res)
}

// peakRSS returns the process's peak resident set size (VmHWM) in KiB.
func peakRSS() int64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return n
		}
	}
	return 0
}
