// Package emutest gives tests the AWS-protocol backends to run against: the
// in-process emulators (localstack/emulators) and, when they are running,
// the external ones (DynamoDB Local and fauxqs, localstack/extemu). The
// adapter packages' tests hand them to the shared/storetest suites; tests of
// code built on the store take a fresh table from Table.
package emutest

import (
	"context"
	"testing"

	"github.com/lull-ai/lull/localstack/emulators"
	"github.com/lull-ai/lull/localstack/extemu"
	"github.com/lull-ai/lull/shared/awsclients"
	"github.com/lull-ai/lull/shared/dynamodb"
	"github.com/lull-ai/lull/shared/lull"
)

// Backend is a set of AWS-protocol endpoints to run the suites against.
type Backend struct {
	// Name is "inprocess" or "external".
	Name    string
	Clients *awsclients.Clients
}

// Backends returns the in-process emulators and, when the LULL_EXT_*_URL
// variables name running external emulators (DynamoDB Local and fauxqs, see
// localstack/scripts/emulators.sh), those too. With LULL_REQUIRE_EXTERNAL=1
// missing external emulators fail the test instead of being left out.
func Backends(t *testing.T) []Backend {
	t.Helper()
	emu, err := emulators.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { emu.Close() })
	in, err := awsclients.New(context.Background(), emu.Endpoints)
	if err != nil {
		t.Fatal(err)
	}
	backends := []Backend{{Name: "inprocess", Clients: in}}
	if ep, ok := extemu.FromEnv(); ok {
		c, err := awsclients.New(context.Background(), awsclients.Endpoints{DynamoDB: ep.DynamoDB, SQS: ep.SQS, S3: ep.S3})
		if err != nil {
			t.Fatal(err)
		}
		backends = append(backends, Backend{Name: "external", Clients: c})
	} else if extemu.Required() {
		extemu.Require(t) // fails with the reason and how to start them
	}
	return backends
}

// Table returns a store over a new, uniquely named table on the in-process
// emulators, and the backend it lives on, for tests of code built on the store.
func Table(t *testing.T, prefix string) (*dynamodb.Store, Backend) {
	t.Helper()
	b := Backends(t)[0]
	s := dynamodb.New(b.Clients.DynamoDB, prefix+"-"+lull.NewID("t"))
	if err := s.CreateTable(context.Background()); err != nil {
		t.Fatal(err)
	}
	return s, b
}
