// Command api is the API Lambda: API Gateway (HTTP API, payload v2) in front
// of httpapi.Server. Configuration comes from the environment (settings.API);
// apilambda.New wires it.
package main

import (
	"context"
	"log/slog"
	"os"

	"github.com/aws/aws-lambda-go/lambda"
	"github.com/awslabs/aws-lambda-go-api-proxy/httpadapter"

	"github.com/lull-ai/lull/lambdas/api/apilambda"
	"github.com/lull-ai/lull/lambdas/lambdaenv"
	"github.com/lull-ai/lull/shared/settings"
)

func main() {
	log := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	var cfg settings.API
	c, err := lambdaenv.Load(context.Background(), &cfg)
	if err != nil {
		log.Error("api init failed", "err", err)
		os.Exit(1)
	}
	h, err := apilambda.New(cfg, c, log)
	if err != nil {
		log.Error("api init failed", "err", err)
		os.Exit(1)
	}
	lambda.Start(httpadapter.NewV2(h).ProxyWithContext)
}
