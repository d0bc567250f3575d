// Package emulators runs AWS-protocol emulators inside the current process,
// each on its own 127.0.0.1 port: goaws for SQS, minidyn for DynamoDB and
// gofakes3 for S3. They speak the real wire protocols, so the real SDK
// clients talk to them over HTTP.
package emulators

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/Admiral-Piett/goaws/app/gosqs"
	"github.com/Admiral-Piett/goaws/app/models"
	"github.com/Admiral-Piett/goaws/app/router"
	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"
	"github.com/sirupsen/logrus"
	"github.com/truora/minidyn/server"

	"github.com/lull-ai/lull/shared/awsclients"
)

// Emulators is a running set of in-process emulators.
type Emulators struct {
	servers []*http.Server
	// Endpoints are the base URLs of the three services.
	Endpoints awsclients.Endpoints
}

// goaws keeps its queues in package globals, so one SQS emulator serves the
// whole process; it is started once and shared.
var (
	sqsOnce sync.Once
	sqsURL  string
	sqsErr  error
)

// Start starts a DynamoDB and an S3 emulator for the caller and returns them
// with the process-wide SQS emulator. Queue names must therefore be unique per
// caller (tests use a random prefix).
func Start() (*Emulators, error) {
	e := &Emulators{}
	sqsOnce.Do(func() { sqsURL, sqsErr = startSQS() })
	if sqsErr != nil {
		return nil, sqsErr
	}
	e.Endpoints.SQS = sqsURL
	ddb, err := e.serve(&queryShim{next: &removeShim{next: server.NewServer()}})
	if err != nil {
		return nil, err
	}
	e.Endpoints.DynamoDB = ddb
	s3, err := e.serve(gofakes3.New(s3mem.New(), gofakes3.WithLogger(gofakes3.DiscardLog())).Server())
	if err != nil {
		e.Close()
		return nil, err
	}
	e.Endpoints.S3 = s3
	return e, nil
}

func (e *Emulators) serve(h http.Handler) (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("emulators: listen: %w", err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	e.servers = append(e.servers, srv)
	go func() { _ = srv.Serve(ln) }()
	return "http://" + ln.Addr().String(), nil
}

// Close stops the DynamoDB and S3 emulators.
func (e *Emulators) Close() error {
	var errs []error
	for _, s := range e.servers {
		errs = append(errs, s.Close())
	}
	return errors.Join(errs...)
}

func startSQS() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("emulators: listen: %w", err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	logrus.SetOutput(io.Discard)
	models.CurrentEnvironment.Host = "127.0.0.1"
	models.CurrentEnvironment.Port = strconv.Itoa(port)
	models.CurrentEnvironment.Region = ""
	models.CurrentEnvironment.AccountID = "000000000000"
	go gosqs.PeriodicTasks(250*time.Millisecond, make(chan bool))
	srv := &http.Server{Handler: &sqsShim{next: router.New()}, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	return "http://" + ln.Addr().String(), nil
}

// Wait blocks until ctx ends; it exists so callers can treat the emulators
// like other long-running components.
func (e *Emulators) Wait(ctx context.Context) { <-ctx.Done() }
