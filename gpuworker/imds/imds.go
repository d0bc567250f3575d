// Package imds watches the EC2 instance metadata service (IMDSv2) for the
// signals that an instance is about to go away: a spot interruption notice
// and the Auto Scaling target lifecycle state (scale-in, or a replacement
// after a rebalance recommendation). A rebalance recommendation alone is
// reported but is not a reason to stop: with capacity rebalancing on, the
// group launches a replacement and then terminates this instance through its
// termination lifecycle hook, which shows here as a scale-in.
package imds

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"
)

// DefaultURL is the metadata service's address on EC2.
const DefaultURL = "http://169.254.169.254"

// Kinds of notice.
const (
	KindSpotInterruption = "spot-interruption"
	KindRebalance        = "rebalance-recommendation"
	KindScaleIn          = "asg-terminating"
)

// Notice is a signal from the metadata service. Deadline is when the
// instance will be taken away (zero when no hard deadline is known).
type Notice struct {
	Kind     string
	Deadline time.Time
	Detail   string
}

// Drains reports whether the notice means the instance is going away, so the
// worker must stop taking work: a spot interruption or a scale-in. A
// rebalance recommendation does not: the instance may run for hours yet, and
// Auto Scaling replaces it through the lifecycle hook when it decides to.
func (n *Notice) Drains() bool {
	return n != nil && (n.Kind == KindSpotInterruption || n.Kind == KindScaleIn)
}

// Client reads instance metadata with IMDSv2 session tokens.
type Client struct {
	baseURL string
	http    *http.Client

	mu      sync.Mutex
	token   string
	expires time.Time
}

// New returns a client for the metadata service at baseURL (DefaultURL on EC2).
func New(baseURL string) *Client {
	return &Client{baseURL: strings.TrimRight(baseURL, "/"), http: &http.Client{Timeout: 2 * time.Second}}
}

func (c *Client) sessionToken(ctx context.Context) (string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.token != "" && time.Now().Before(c.expires) {
		return c.token, nil
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, c.baseURL+"/latest/api/token", nil)
	if err != nil {
		return "", err
	}
	req.Header.Set("X-aws-ec2-metadata-token-ttl-seconds", "21600")
	resp, err := c.http.Do(req)
	if err != nil {
		return "", fmt.Errorf("imds: token: %w", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("imds: token: status %d", resp.StatusCode)
	}
	c.token, c.expires = strings.TrimSpace(string(body)), time.Now().Add(6*time.Hour-time.Minute)
	return c.token, nil
}

// Get reads a metadata path (below /latest/meta-data/). A missing item is
// ("", false, nil).
func (c *Client) Get(ctx context.Context, path string) (string, bool, error) {
	for try := 0; try < 2; try++ {
		tok, err := c.sessionToken(ctx)
		if err != nil {
			return "", false, err
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.baseURL+"/latest/meta-data/"+path, nil)
		if err != nil {
			return "", false, err
		}
		req.Header.Set("X-aws-ec2-metadata-token", tok)
		resp, err := c.http.Do(req)
		if err != nil {
			return "", false, fmt.Errorf("imds: get %s: %w", path, err)
		}
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		resp.Body.Close()
		switch resp.StatusCode {
		case http.StatusOK:
			return string(body), true, nil
		case http.StatusNotFound:
			return "", false, nil
		case http.StatusUnauthorized: // token expired early: fetch a new one once
			c.mu.Lock()
			c.token = ""
			c.mu.Unlock()
			continue
		default:
			return "", false, fmt.Errorf("imds: get %s: status %d", path, resp.StatusCode)
		}
	}
	return "", false, errors.New("imds: token refused twice")
}

// Check looks for a notice once, in order of urgency: a spot interruption,
// then a scale-in (target lifecycle state Terminated), then a rebalance
// recommendation. Nil when there is none.
func (c *Client) Check(ctx context.Context) (*Notice, error) {
	if body, ok, err := c.Get(ctx, "spot/instance-action"); err != nil {
		return nil, err
	} else if ok {
		var a struct{ Action, Time string }
		_ = json.Unmarshal([]byte(body), &a)
		n := &Notice{Kind: KindSpotInterruption, Detail: a.Action}
		if t, err := time.Parse(time.RFC3339, a.Time); err == nil {
			n.Deadline = t
		} else {
			n.Deadline = time.Now().Add(2 * time.Minute) // AWS gives two minutes' notice
		}
		return n, nil
	}
	if state, ok, err := c.Get(ctx, "autoscaling/target-lifecycle-state"); err != nil {
		return nil, err
	} else if ok && strings.TrimSpace(state) == "Terminated" {
		return &Notice{Kind: KindScaleIn, Detail: "target lifecycle state Terminated"}, nil
	}
	if body, ok, err := c.Get(ctx, "events/recommendations/rebalance"); err != nil {
		return nil, err
	} else if ok {
		return &Notice{Kind: KindRebalance, Detail: strings.TrimSpace(body)}, nil
	}
	return nil, nil
}

// Watch polls every interval until a notice that drains (Notice.Drains)
// appears, and returns it; nil when ctx ends first. Other notices (rebalance
// recommendations) go to onInfo, the first of each kind only, and polling
// goes on; metadata errors go to onErr. Either callback may be nil.
func (c *Client) Watch(ctx context.Context, interval time.Duration, onErr func(error), onInfo func(*Notice)) *Notice {
	t := time.NewTicker(interval)
	defer t.Stop()
	seen := map[string]bool{}
	for {
		n, err := c.Check(ctx)
		switch {
		case n.Drains():
			return n
		case n != nil && !seen[n.Kind]:
			seen[n.Kind] = true
			if onInfo != nil {
				onInfo(n)
			}
		case err != nil && ctx.Err() == nil && onErr != nil:
			onErr(err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}
