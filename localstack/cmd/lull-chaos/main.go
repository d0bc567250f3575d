// Command lull-chaos runs lull's fault-injection harness (`make chaos`): the
// dev stack on DynamoDB Local and fauxqs behind fault-injecting proxies,
// worker processes SIGKILLed mid-generation, an engine answering 5xx and
// stalling, a webhook receiver that fails, then healing and a check of every
// guarantee. It prints the results as Markdown tables and exits 1 when an
// invariant broke.
//
// Run it under the external emulators, from the repository root:
//
//	bash localstack/scripts/emulators.sh run -- go run ./localstack/cmd/lull-chaos -profile short
//
// Flags: -profile short|long (default long), -seed N (default: the
// profile's), -logdir DIR (worker and stack logs; default a new temporary
// directory), -worker PATH (a built gpuworker; default: go build ./gpuworker).
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/lull-ai/lull/localstack/chaos"
	"github.com/lull-ai/lull/localstack/extemu"
	"github.com/lull-ai/lull/shared/awsclients"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	ok, err := run(ctx, log)
	if err != nil {
		log.Error("lull-chaos failed", "err", err)
		os.Exit(2)
	}
	if !ok {
		os.Exit(1)
	}
}

func run(ctx context.Context, log *slog.Logger) (bool, error) {
	profile := flag.String("profile", "long", "short or long")
	seed := flag.Uint64("seed", 0, "seed of every fault draw (0: the profile's)")
	logDir := flag.String("logdir", "", "directory for workers.log and stack.log (default: a new temporary directory)")
	worker := flag.String("worker", "", "gpuworker binary (default: built with go build ./gpuworker)")
	flag.Parse()
	p, err := chaos.ProfileByName(*profile)
	if err != nil {
		return false, err
	}
	if *seed != 0 {
		p.Seed = *seed
	}
	ep, ok := extemu.FromEnv()
	if !ok {
		return false, fmt.Errorf("the external emulators are not running: use bash localstack/scripts/emulators.sh run -- %s", os.Args[0])
	}
	if *worker == "" {
		dir, err := os.MkdirTemp("", "lull-chaos-bin-")
		if err != nil {
			return false, err
		}
		defer os.RemoveAll(dir)
		*worker = filepath.Join(dir, "gpuworker")
		if out, err := exec.CommandContext(ctx, "go", "build", "-o", *worker, "./gpuworker").CombinedOutput(); err != nil {
			return false, fmt.Errorf("go build ./gpuworker (run from the repository root): %v\n%s", err, out)
		}
	}
	rep, err := chaos.Run(ctx, chaos.Config{
		Profile: p, Endpoints: awsclients.Endpoints{DynamoDB: ep.DynamoDB, SQS: ep.SQS, S3: ep.S3},
		WorkerBinary: *worker, LogDir: *logDir, Logger: log,
	})
	if err != nil {
		return false, err
	}
	rep.Table(os.Stdout)
	return len(rep.Failures) == 0, nil
}
