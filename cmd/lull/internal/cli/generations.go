package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/lull-ai/lull/cmd/lull/internal/apiclient"
	"github.com/lull-ai/lull/cmd/lull/internal/progress"
)

type sendOpts struct {
	model, webhook, window string
	maxTokens              int
}

func sendCmd(fs *flag.FlagSet) runFunc {
	o := &sendOpts{}
	fs.StringVar(&o.model, "model", "", "model to run (default: the only model served, if just one)")
	fs.StringVar(&o.webhook, "webhook", "", "webhook endpoint ID (wh_…) to notify when the generation ends")
	fs.StringVar(&o.window, "window", "", "completion window, e.g. 1h, 24h (default: the API's, 24h)")
	fs.IntVar(&o.maxTokens, "max-tokens", 0, "most tokens to generate (default: the engine's)")
	return o.run
}

func (o *sendOpts) run(ctx context.Context, a *App, args []string) error {
	prompt := strings.Join(args, " ")
	if prompt == "" || prompt == "-" {
		data, err := io.ReadAll(io.LimitReader(a.Stdin, 2<<20))
		if err != nil {
			return fmt.Errorf("read prompt: %w", err)
		}
		prompt = strings.TrimSpace(string(data))
	}
	if prompt == "" {
		return usagef("no PROMPT: pass it as arguments or on standard input")
	}
	c, err := a.client()
	if err != nil {
		return err
	}
	model, err := pickModel(ctx, c, o.model)
	if err != nil {
		return err
	}
	q, err := submit(ctx, c, model, prompt, o.webhook, o.window, o.maxTokens)
	if err != nil {
		return err
	}
	fmt.Fprintln(a.Stdout, q.ID)
	return nil
}

// submit sends one slow chat completion.
func submit(ctx context.Context, c *apiclient.Client, model, prompt, webhook, window string, maxTokens int) (*apiclient.Queued, error) {
	body := map[string]any{"model": model, "messages": []map[string]string{{"role": "user", "content": prompt}}}
	if maxTokens > 0 {
		body["max_tokens"] = maxTokens
	}
	if webhook != "" {
		body["metadata"] = map[string]string{"webhook_id": webhook}
	}
	return c.Chat(ctx, body, window)
}

// pickModel returns model, or the only chat model served when model is
// empty (embedding models cannot answer a chat completion).
func pickModel(ctx context.Context, c *apiclient.Client, model string) (string, error) {
	if model != "" {
		return model, nil
	}
	all, err := c.Models(ctx)
	if err != nil {
		return "", err
	}
	var models []apiclient.Model
	for _, m := range all {
		if m.Task == "" || m.Task == "generate" {
			models = append(models, m)
		}
	}
	if len(models) != 1 {
		names := make([]string, len(models))
		for i, m := range models {
			names[i] = m.ID
		}
		return "", usagef("--model is required: this deployment serves %d chat models (%s)", len(models), strings.Join(names, ", "))
	}
	return models[0].ID, nil
}

type getOpts struct{ content bool }

func getCmd(fs *flag.FlagSet) runFunc {
	o := &getOpts{}
	fs.BoolVar(&o.content, "content", false, "print only the generated text (exits 1 unless completed)")
	return o.run
}

func (o *getOpts) run(ctx context.Context, a *App, args []string) error {
	if len(args) != 1 {
		return usagef("want one generation ID")
	}
	c, err := a.client()
	if err != nil {
		return err
	}
	g, err := c.Generation(ctx, args[0])
	if err != nil {
		return err
	}
	if !o.content {
		out, err := json.MarshalIndent(g, "", "  ")
		if err != nil {
			return err
		}
		fmt.Fprintf(a.Stdout, "%s\n", out)
		return nil
	}
	if g.Status != "completed" {
		return &exitError{ExitFailed, fmt.Sprintf("%s is %s", g.ID, g.Status)}
	}
	fmt.Fprintln(a.Stdout, responseText(g.Response))
	return nil
}

// responseText returns the text of a chat.completion's or text_completion's
// choices, one per line.
func responseText(resp json.RawMessage) string {
	var r struct {
		Choices []struct {
			Text    string `json:"text"`
			Message struct {
				Content string `json:"content"`
			} `json:"message"`
		} `json:"choices"`
	}
	if json.Unmarshal(resp, &r) != nil {
		return string(resp)
	}
	var b bytes.Buffer
	for i, ch := range r.Choices {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(ch.Message.Content + ch.Text)
	}
	return b.String()
}

type waitOpts struct {
	poll, interval time.Duration
	timeout        time.Duration
}

func waitCmd(fs *flag.FlagSet) runFunc {
	o := &waitOpts{}
	fs.DurationVar(&o.poll, "poll", time.Second, "how often to read each generation's status")
	fs.DurationVar(&o.interval, "interval", 10*time.Second, "least time between progress lines when not on a terminal")
	fs.DurationVar(&o.timeout, "timeout", 0, "give up after this long, leaving the generations running (default: no limit)")
	return o.run
}

// pollConcurrency is how many generations wait reads at once.
const pollConcurrency = 8

func (o *waitOpts) run(ctx context.Context, a *App, ids []string) error {
	if len(ids) == 0 {
		return usagef("want at least one generation ID")
	}
	c, err := a.client()
	if err != nil {
		return err
	}
	ctx, stop := a.withInterruptCancel(ctx)
	defer stop()
	if o.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, o.timeout)
		defer cancel()
	}
	label := ids[0]
	if len(ids) > 1 {
		label = fmt.Sprintf("%d generations", len(ids))
	}
	bar := &progress.Bar{Out: a.Stdout, Terminal: a.Terminal, Width: a.Width, Label: label, Now: a.Now, Interval: o.interval}
	status := make([]string, len(ids))
	t := time.NewTicker(pollEvery(o.poll))
	defer t.Stop()
	for {
		if err := pollGenerations(ctx, c, ids, status); err != nil {
			bar.Clear()
			if ctx.Err() != nil {
				return &exitError{ExitInterrupted, "stopped waiting; the generations carry on"}
			}
			return err
		}
		counts, pending := progress.Counts{Total: len(ids)}, 0
		for _, s := range status {
			switch {
			case s == "completed":
				counts.Completed++
			case apiclient.Terminal(s):
				counts.Failed++
			default:
				pending++
			}
		}
		if pending == 0 {
			bar.Finish(counts, "ended")
			for i, id := range ids {
				fmt.Fprintf(a.Stdout, "%s %s\n", id, status[i])
			}
			if counts.Failed > 0 {
				return &exitError{ExitFailed, fmt.Sprintf("%d of %d generations did not complete", counts.Failed, len(ids))}
			}
			return nil
		}
		bar.Update(counts, "waiting")
		select {
		case <-ctx.Done():
			bar.Clear()
			return &exitError{ExitInterrupted, "stopped waiting; the generations carry on"}
		case <-t.C:
		}
	}
}

// pollGenerations reads every generation whose status is not terminal yet,
// a few at a time, and stores the new statuses.
func pollGenerations(ctx context.Context, c *apiclient.Client, ids, status []string) error {
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
		sem      = make(chan struct{}, pollConcurrency)
	)
	for i, id := range ids {
		if apiclient.Terminal(status[i]) {
			continue
		}
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			g, err := c.Generation(ctx, id)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				if firstErr == nil {
					firstErr = fmt.Errorf("%s: %w", id, err)
				}
				return
			}
			status[i] = g.Status
		})
	}
	wg.Wait()
	return firstErr
}
