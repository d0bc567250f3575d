// Command lull-dev runs the whole lull system on one machine (`make run`):
// emulators, API on 127.0.0.1:8080, a GPU worker against the vLLM simulator,
// the DLQ consumer and the sweeper. Stop it with Ctrl-C.
//
// Environment: LULL_DEV_API_KEY (default sk-lull-dev), LULL_MODEL (default
// lull-sim-1), LULL_API_ADDR (default 127.0.0.1:8080), VLLM_URL (use a real
// OpenAI-compatible engine instead of the simulator), AWS_ENDPOINT_URL or
// AWS_ENDPOINT_URL_{DYNAMODB,SQS,S3} (use external emulators such as
// LocalStack instead of the in-process ones), LULL_SIM_TIME_SCALE (simulator
// speed, default 1 = real time), LULL_WORKERS (default 1), LULL_GATE (the
// worker's intake policy, default metrics: its changes are logged).
package main

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/lull-ai/lull/localstack/devstack"
	"github.com/lull-ai/lull/shared/awsclients"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	if err := run(ctx, log); err != nil {
		log.Error("lull-dev failed", "err", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, log *slog.Logger) error {
	cfg := devstack.Config{
		APIAddr:   os.Getenv("LULL_API_ADDR"),
		DevAPIKey: os.Getenv("LULL_DEV_API_KEY"),
		Model:     os.Getenv("LULL_MODEL"),
		VLLMURL:   os.Getenv("VLLM_URL"),
		Gate:      cmp.Or(os.Getenv("LULL_GATE"), "metrics"),
		Logger:    log,
	}
	if g := cfg.Gate; g != "metrics" && g != "fixed" && g != "queue-depth" {
		return fmt.Errorf("LULL_GATE=%q: want metrics, fixed or queue-depth", g)
	}
	all := os.Getenv("AWS_ENDPOINT_URL")
	cfg.Endpoints = awsclients.Endpoints{
		DynamoDB: cmp.Or(os.Getenv("AWS_ENDPOINT_URL_DYNAMODB"), all),
		SQS:      cmp.Or(os.Getenv("AWS_ENDPOINT_URL_SQS"), all),
		S3:       cmp.Or(os.Getenv("AWS_ENDPOINT_URL_S3"), all),
	}
	if v := os.Getenv("LULL_SIM_TIME_SCALE"); v != "" {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || f <= 0 {
			return fmt.Errorf("LULL_SIM_TIME_SCALE=%q: want a positive number", v)
		}
		cfg.Sim.TimeScale = f
	}
	if v := os.Getenv("LULL_WORKERS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return fmt.Errorf("LULL_WORKERS=%q: want a number >= 0", v)
		}
		cfg.Workers = max(n, -1)
		if n == 0 {
			cfg.Workers = -1
		}
	}
	st, err := devstack.Start(ctx, cfg)
	if err != nil {
		return err
	}
	key, model := st.Config().DevAPIKey, st.Config().Model
	emu := "in-process emulators (goaws, minidyn, gofakes3)"
	if cfg.Endpoints != (awsclients.Endpoints{}) {
		emu = fmt.Sprintf("external endpoints %+v", st.Endpoints)
	}
	engine := "built-in vLLM simulator at " + st.EngineURL
	if cfg.VLLMURL != "" {
		engine = "external engine at " + cfg.VLLMURL
	}
	fmt.Printf(`
lull dev stack is up.
  API:      %[1]s   (API key %[2]s, tenant "dev")
  models:   %[3]s (chat, completions, responses), %[7]s (embeddings)
  engine:   %[4]s
  storage:  %[5]s
  worker:   load gate %[6]q (watch the "load gate" log lines)

Try it:
  curl -s %[1]s/v1/slow/chat/completions \
    -H "Authorization: Bearer %[2]s" -H "Content-Type: application/json" \
    -d '{"model":"%[3]s","messages":[{"role":"user","content":"Say hello"}]}'
  # → {"id":"gen_…","status":"queued",…}; then:
  curl -s %[1]s/v1/generation/<id> -H "Authorization: Bearer %[2]s"

Embeddings (slow; the vectors arrive in the generation's response):
  curl -s %[1]s/v1/slow/embeddings \
    -H "Authorization: Bearer %[2]s" -H "Content-Type: application/json" \
    -d '{"model":"%[7]s","input":["first text","second text"]}'

A background response (OpenAI's Responses API; resp_X is generation gen_X):
  curl -s %[1]s/v1/responses \
    -H "Authorization: Bearer %[2]s" -H "Content-Type: application/json" \
    -d '{"model":"%[3]s","input":"Say hello","background":true}'
  curl -s %[1]s/v1/responses/<resp_id> -H "Authorization: Bearer %[2]s"   # status, then output

Webhooks (dev mode: plain-http and loopback receivers are ALLOWED; deployed stacks
refuse them unless LULL_WEBHOOK_ALLOW_INSECURE=true):
  curl -s %[1]s/v1/webhook_endpoints -H "Authorization: Bearer %[2]s" -H "Content-Type: application/json" \
    -d '{"name":"dev","url":"http://127.0.0.1:9000/hook","event_types":["response.completed","batch.completed"]}'
  # → {"id":"wh_…","signing_secret":"whsec_…",…}; OpenAI's SDKs verify events with webhooks.unwrap
  # then add "metadata":{"webhook_id":"wh_…"} to a slow request; events arrive signed
  # (Standard Webhooks headers webhook-id, webhook-timestamp, webhook-signature).

Batch API (OpenAI's, same JSONL):
  echo '{"custom_id":"r1","method":"POST","url":"/v1/chat/completions","body":{"model":"%[3]s","messages":[{"role":"user","content":"hi"}]}}' > /tmp/in.jsonl
  curl -s %[1]s/v1/files -H "Authorization: Bearer %[2]s" -F purpose=batch -F file=@/tmp/in.jsonl   # → {"id":"file_…"}
  curl -s %[1]s/v1/batches -H "Authorization: Bearer %[2]s" -H "Content-Type: application/json" \
    -d '{"input_file_id":"file_…","endpoint":"/v1/chat/completions","completion_window":"24h"}'
  # poll /v1/batches/<id>, then GET /v1/files/<output_file_id>/content

OpenAI SDKs: base_url=%[1]s/v1/slow (slow requests) or %[1]s/v1 (responses, files, batches, webhooks), api_key=%[2]s.
Ctrl-C stops everything.
`, st.URL, key, model, engine, emu, cfg.Gate, st.EmbedModel())
	<-ctx.Done()
	log.Info("shutting down")
	done := make(chan error, 1)
	go func() { done <- st.Close() }()
	select {
	case err := <-done:
		return err
	case <-time.After(45 * time.Second):
		return fmt.Errorf("shutdown took longer than 45s")
	}
}
