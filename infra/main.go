// Command infra is the CDK app that deploys lull: one stack holding a
// lull.Service configured from a JSON file (context key "config", default
// lull.config.json, else lull.config.example.json). cdk-nag's AwsSolutions
// pack runs on every synth; an unsuppressed finding fails it.
//
//	npx cdk synth -c config=lull.config.json
package main

import (
	"cmp"
	"fmt"
	"os"

	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/jsii-runtime-go"
	"github.com/cdklabs/cdk-nag-go/cdknag/v2"

	"github.com/lull-ai/lull/infra/lull"
)

func main() {
	// No jsii.Close: the Node child exits with this process, and Close
	// races Go's own reaping of it ("waitid: no child processes").
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "infra:", err)
		os.Exit(1)
	}
}

func run() error {
	app := awscdk.NewApp(nil)
	path := "lull.config.json"
	if v, ok := app.Node().TryGetContext(jsii.String("config")).(string); ok && v != "" {
		path = v
	} else if _, err := os.Stat(path); err != nil {
		path = "lull.config.example.json"
	}
	cfg, err := lull.ReadConfig(path)
	if err != nil {
		return err
	}
	props, err := cfg.Props("../build")
	if err != nil {
		return err
	}
	name := cfg.StackName
	if name == "" {
		name = "lull"
	}
	stack := awscdk.NewStack(app, jsii.String(name), &awscdk.StackProps{
		Description: jsii.String("lull: asynchronous LLM inference on spot GPUs (config " + path + ")"),
		Env:         environment(cfg),
	})
	if _, err := lull.NewService(stack, "Lull", props); err != nil {
		return err
	}
	awscdk.Aspects_Of(app).Add(cdknag.NewAwsSolutionsChecks(&cdknag.NagPackProps{Verbose: jsii.Bool(true)}), nil)
	app.Synth(nil)
	return nil
}

// environment is the stack's account and region: the config's, else those
// the CDK CLI found in the credentials (CDK_DEFAULT_ACCOUNT and
// CDK_DEFAULT_REGION). With both known the stack is environment-specific,
// so the VPC can span all of the region's zones (CDK looks them up and
// caches them in cdk.context.json); without, it is environment-agnostic
// and gets 2 zones, and a warning says so.
func environment(cfg lull.Config) *awscdk.Environment {
	account := cmp.Or(cfg.Account, os.Getenv("CDK_DEFAULT_ACCOUNT"))
	region := cmp.Or(cfg.Region, os.Getenv("CDK_DEFAULT_REGION"))
	if account == "" || region == "" {
		fmt.Fprintln(os.Stderr, "infra: warning: no account or region (set them in the config, or run through the CDK CLI with credentials):"+
			" the stack is environment-agnostic and its VPC spans only 2 Availability Zones")
		return nil
	}
	return &awscdk.Environment{Account: jsii.String(account), Region: jsii.String(region)}
}
