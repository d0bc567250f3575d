// Package lambdaenv is the start-up every lull Lambda shares: read its
// settings from the environment and build the AWS clients once.
package lambdaenv

import (
	"context"
	"os"

	"github.com/lull-ai/lull/shared/awsclients"
	"github.com/lull-ai/lull/shared/envconfig"
)

// Load fills cfg (a pointer to a settings struct) from the environment and
// returns AWS clients from the default configuration chain.
func Load(ctx context.Context, cfg any) (*awsclients.Clients, error) {
	if err := envconfig.Load(cfg, os.LookupEnv); err != nil {
		return nil, err
	}
	return awsclients.New(ctx, awsclients.Endpoints{})
}
