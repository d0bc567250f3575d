package cli

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/lull-ai/lull/cmd/lull/internal/apiclient"
	"github.com/lull-ai/lull/cmd/lull/internal/listen"
)

func webhookCommands() *command {
	return &command{
		name: "webhooks", summary: "webhook endpoints, their deliveries, and a local receiver",
		sub: []*command{
			{name: "create", summary: "register an endpoint and print its signing secret", usage: "--url URL [--events a,b] [--description D]",
				setup: webhookCreateCmd},
			{name: "list", summary: "list your endpoints", usage: "", run: runWebhookList},
			{name: "deliveries", summary: "an endpoint's recent deliveries with every attempt", usage: "WEBHOOK_ID [--limit N]",
				setup: webhookDeliveriesCmd},
			{name: "retry", summary: "send a delivery again now", usage: "WEBHOOK_ID DELIVERY_ID", run: runWebhookRetry},
			{name: "test", summary: "send a real 1-token generation to an endpoint and show its delivery", usage: "WEBHOOK_ID [--model M]",
				help: "The API has no test-event endpoint: this submits a slow request with max_tokens 1 naming the\n" +
					"endpoint (metadata.webhook_id), waits for its generation.completed delivery and prints the attempts.\n" +
					"Exits 0 when the endpoint answered 2xx.",
				setup: webhookTestCmd},
			{name: "listen", summary: "receive deliveries locally: verify signatures, print events, forward", usage: "[--forward-to URL] [--addr HOST:PORT] [--secret whsec_…]",
				help: `Without --secret (or LULL_WEBHOOK_SECRET) it registers a temporary endpoint for
its own address (--public-url overrides that URL), verifies with that
endpoint's secret, and deletes the endpoint when stopped with Ctrl-C. With a
secret it only listens: point an existing endpoint here.

Each delivery's Standard Webhooks signature is checked (401 when it does not
verify); verified ones print one line and, with --forward-to, are posted to
that URL with their headers, lull getting the target's answer back. The API
accepts http:// and loopback endpoints only when it runs with
LULL_WEBHOOK_ALLOW_INSECURE (as make run does).`,
				setup: webhookListenCmd},
		},
	}
}

type webhookCreateOpts struct{ url, events, description string }

func webhookCreateCmd(fs *flag.FlagSet) runFunc {
	o := &webhookCreateOpts{}
	fs.StringVar(&o.url, "url", "", "where deliveries are POSTed (required)")
	fs.StringVar(&o.events, "events", "", "comma-separated event types (default: all)")
	fs.StringVar(&o.description, "description", "", "a note for people")
	return o.run
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func (o *webhookCreateOpts) run(ctx context.Context, a *App, args []string) error {
	if o.url == "" && len(args) == 1 {
		o.url = args[0]
	} else if len(args) > 0 {
		return usagef("unexpected arguments %q", args)
	}
	if o.url == "" {
		return usagef("--url is required")
	}
	c, err := a.client()
	if err != nil {
		return err
	}
	w, err := c.CreateWebhook(ctx, o.url, splitList(o.events), o.description)
	if err != nil {
		return err
	}
	fmt.Fprintf(a.Stdout, "%s  %s\n  events  %s\n  secret  %s   (shown only now: keep it to verify signatures)\n",
		w.ID, w.URL, strings.Join(w.Events, ","), w.Secret)
	return nil
}

func runWebhookList(ctx context.Context, a *App, args []string) error {
	if len(args) > 0 {
		return usagef("takes no arguments")
	}
	c, err := a.client()
	if err != nil {
		return err
	}
	ws, err := c.Webhooks(ctx)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(a.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tSTATUS\tURL\tEVENTS\tDESCRIPTION")
	for _, w := range ws {
		status := w.Status
		if w.DisabledReason != nil {
			status += " (" + *w.DisabledReason + ")"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", w.ID, status, w.URL, strings.Join(w.Events, ","), w.Description)
	}
	return tw.Flush()
}

type deliveriesOpts struct{ limit int }

func webhookDeliveriesCmd(fs *flag.FlagSet) runFunc {
	o := &deliveriesOpts{}
	fs.IntVar(&o.limit, "limit", 20, "most deliveries to show (1–500)")
	return o.run
}

func (o *deliveriesOpts) run(ctx context.Context, a *App, args []string) error {
	if len(args) != 1 {
		return usagef("want one WEBHOOK_ID")
	}
	c, err := a.client()
	if err != nil {
		return err
	}
	ds, err := c.Deliveries(ctx, args[0], o.limit)
	if err != nil {
		return err
	}
	printDeliveries(a.Stdout, ds)
	return nil
}

func printDeliveries(w io.Writer, ds []apiclient.Delivery) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "DELIVERY\tEVENT\tOBJECT\tSTATUS\tATTEMPTS\tLAST ANSWER\tNEXT")
	for _, d := range ds {
		last := "-"
		if n := len(d.Attempts); n > 0 {
			last = attemptText(d.Attempts[n-1])
		}
		next := "-"
		if d.NextAttemptAt != nil {
			next = time.Unix(*d.NextAttemptAt, 0).UTC().Format(time.RFC3339)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%s\n", d.ID, d.EventType, cmp.Or(d.GenerationID, "-"), d.Status, len(d.Attempts), last, next)
	}
	_ = tw.Flush()
}

func attemptText(at apiclient.Attempt) string {
	s := "no answer"
	if at.StatusCode != nil {
		s = fmt.Sprint(*at.StatusCode)
	}
	s += fmt.Sprintf(" in %d ms", at.LatencyMS)
	if at.Error != "" {
		s += " (" + at.Error + ")"
	}
	return s
}

func runWebhookRetry(ctx context.Context, a *App, args []string) error {
	if len(args) != 2 {
		return usagef("want WEBHOOK_ID DELIVERY_ID")
	}
	c, err := a.client()
	if err != nil {
		return err
	}
	d, err := c.RetryDelivery(ctx, args[0], args[1])
	if err != nil {
		return err
	}
	fmt.Fprintf(a.Stdout, "%s %s: attempt %d queued (see: lull webhooks deliveries %s)\n", d.ID, d.Status, len(d.Attempts)+1, args[0])
	return nil
}

type webhookTestOpts struct {
	model   string
	timeout time.Duration
	poll    time.Duration
}

func webhookTestCmd(fs *flag.FlagSet) runFunc {
	o := &webhookTestOpts{}
	fs.StringVar(&o.model, "model", "", "model to run the test generation on (default: the only model served)")
	fs.DurationVar(&o.timeout, "timeout", 2*time.Minute, "how long to wait for the delivery")
	fs.DurationVar(&o.poll, "poll", time.Second, "how often to look for it")
	return o.run
}

func (o *webhookTestOpts) run(ctx context.Context, a *App, args []string) error {
	if len(args) != 1 {
		return usagef("want one WEBHOOK_ID")
	}
	c, err := a.client()
	if err != nil {
		return err
	}
	ctx, stop := a.withInterruptCancel(ctx)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	model, err := pickModel(ctx, c, o.model)
	if err != nil {
		return err
	}
	q, err := submit(ctx, c, model, "lull webhook test", args[0], "", 1)
	if err != nil {
		return err
	}
	fmt.Fprintf(a.Stdout, "sent %s (1 token, webhook %s); waiting for its delivery\n", q.ID, args[0])
	t := time.NewTicker(pollEvery(o.poll))
	defer t.Stop()
	for {
		ds, err := c.Deliveries(ctx, args[0], 50)
		if err != nil && ctx.Err() == nil {
			return err
		}
		for _, d := range ds {
			if d.GenerationID != q.ID || len(d.Attempts) == 0 {
				continue
			}
			printDeliveries(a.Stdout, []apiclient.Delivery{d})
			last := d.Attempts[len(d.Attempts)-1]
			if last.StatusCode != nil && *last.StatusCode/100 == 2 {
				return nil
			}
			return &exitError{ExitFailed, fmt.Sprintf("the endpoint answered %s", attemptText(last))}
		}
		select {
		case <-ctx.Done():
			return &exitError{ExitFailed, fmt.Sprintf("no delivery of %s to %s within %s (is the endpoint subscribed to generation.completed?)", q.ID, args[0], o.timeout)}
		case <-t.C:
		}
	}
}

type listenOpts struct {
	addr, forwardTo, secret, publicURL, events string
}

func webhookListenCmd(fs *flag.FlagSet) runFunc {
	o := &listenOpts{}
	fs.StringVar(&o.addr, "addr", "127.0.0.1:8089", "address to listen on")
	fs.StringVar(&o.forwardTo, "forward-to", "", "URL to forward each verified delivery to")
	fs.StringVar(&o.secret, "secret", "", "the endpoint's whsec_ secret (or LULL_WEBHOOK_SECRET); without one a temporary endpoint is registered")
	fs.StringVar(&o.publicURL, "public-url", "", "URL lull should deliver to, when registering (default http://ADDR/)")
	fs.StringVar(&o.events, "events", "", "event types of the temporary endpoint (default: all)")
	return o.run
}

func (o *listenOpts) run(ctx context.Context, a *App, args []string) error {
	if len(args) > 0 {
		return usagef("unexpected arguments %q", args)
	}
	ctx, stop := a.withInterruptCancel(ctx)
	defer stop()
	ln, err := net.Listen("tcp", o.addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", o.addr, err)
	}
	defer ln.Close()
	self := "http://" + ln.Addr().String() + "/"
	rc := &listen.Receiver{Out: a.Stdout, ForwardTo: o.forwardTo}
	secret := cmp.Or(o.secret, a.Getenv("LULL_WEBHOOK_SECRET"))
	if secret != "" {
		rc.Secrets = []string{secret}
		fmt.Fprintf(a.Stdout, "listening on %s\n", self)
	} else {
		c, err := a.client()
		if err != nil {
			return err
		}
		w, err := c.CreateWebhook(ctx, cmp.Or(o.publicURL, self), splitList(o.events), "lull webhooks listen")
		if err != nil {
			return fmt.Errorf("register a temporary endpoint: %w", err)
		}
		defer func() {
			dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
			defer cancel()
			if err := c.DeleteWebhook(dctx, w.ID); err != nil {
				fmt.Fprintf(a.Stderr, "delete %s: %v\n", w.ID, err)
				return
			}
			fmt.Fprintf(a.Stdout, "deleted %s\n", w.ID)
		}()
		rc.Secrets = []string{w.Secret}
		fmt.Fprintf(a.Stdout, "listening on %s as %s (send to it with: lull send --webhook %s PROMPT)\n", self, w.ID, w.ID)
	}
	if o.forwardTo != "" {
		fmt.Fprintf(a.Stdout, "forwarding verified deliveries to %s\n", o.forwardTo)
	}
	srv := &http.Server{Handler: rc, ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
