package chaos

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"mime/multipart"
	"net/http"
	"time"
)

// client calls the lull API as a careful application does: every write
// carries an Idempotency-Key where the API honours one, and 5xx, 429 and
// transport errors are retried with backoff.
type client struct {
	base, key string
	http      *http.Client
	tries     int
	// retries counts the calls sent again.
	retries func()
}

// errStatus is a final non-2xx answer.
type errStatus struct {
	code int
	body string
}

func (e *errStatus) Error() string { return fmt.Sprintf("status %d: %s", e.code, e.body) }

// statusOf returns the HTTP status of a final answer, 0 for transport errors.
func statusOf(err error) int {
	if e, ok := errors.AsType[*errStatus](err); ok {
		return e.code
	}
	return 0
}

// do sends the request made by mk (afresh for each try) and decodes a 2xx
// JSON answer into out (when non-nil).
func (c *client) do(ctx context.Context, mk func() (*http.Request, error), out any) error {
	var last error
	for try := range c.tries {
		if try > 0 {
			if c.retries != nil {
				c.retries()
			}
			d := time.Duration(50<<min(try, 6)) * time.Millisecond
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(d + rand.N(d/2+1)):
			}
		}
		req, err := mk()
		if err != nil {
			return err
		}
		req = req.WithContext(ctx)
		req.Header.Set("Authorization", "Bearer "+c.key)
		resp, err := c.http.Do(req)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			last = err
			continue
		}
		body, err := io.ReadAll(io.LimitReader(resp.Body, 256<<20))
		resp.Body.Close()
		switch {
		case err != nil:
			last = err
			continue
		case resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests:
			last = &errStatus{resp.StatusCode, string(body)}
			continue
		case resp.StatusCode >= 300:
			return &errStatus{resp.StatusCode, string(body)}
		}
		if out == nil {
			return nil
		}
		if b, ok := out.(*[]byte); ok {
			*b = body
			return nil
		}
		if err := json.Unmarshal(body, out); err != nil {
			return fmt.Errorf("chaos: decode %s %s: %w: %.200s", req.Method, req.URL.Path, err, body)
		}
		return nil
	}
	return fmt.Errorf("chaos: gave up after %d tries: %w", c.tries, last)
}

func (c *client) postJSON(ctx context.Context, path, idemKey string, body any, out any) error {
	raw, err := json.Marshal(body)
	if err != nil {
		return err
	}
	return c.do(ctx, func() (*http.Request, error) {
		req, err := http.NewRequest(http.MethodPost, c.base+path, bytes.NewReader(raw))
		if err != nil {
			return nil, err
		}
		req.Header.Set("Content-Type", "application/json")
		if idemKey != "" {
			req.Header.Set("Idempotency-Key", idemKey)
		}
		return req, nil
	}, out)
}

func (c *client) get(ctx context.Context, path string, out any) error {
	return c.do(ctx, func() (*http.Request, error) { return http.NewRequest(http.MethodGet, c.base+path, nil) }, out)
}

// uploadFile stores content as a batch input file and returns its ID. The
// Files API has no idempotency key; a retry after a lost answer leaves an
// unused file behind, which is harmless.
func (c *client) uploadFile(ctx context.Context, name string, content []byte) (string, error) {
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	if err := mw.WriteField("purpose", "batch"); err != nil {
		return "", err
	}
	fw, err := mw.CreateFormFile("file", name)
	if err != nil {
		return "", err
	}
	if _, err := fw.Write(content); err != nil {
		return "", err
	}
	if err := mw.Close(); err != nil {
		return "", err
	}
	var f struct{ ID string }
	err = c.do(ctx, func() (*http.Request, error) {
		req, err := http.NewRequest(http.MethodPost, c.base+"/v1/files", bytes.NewReader(buf.Bytes()))
		if err != nil {
			return nil, err
		}
		req.Header.Set("Content-Type", mw.FormDataContentType())
		return req, nil
	}, &f)
	return f.ID, err
}

// chatBody is a small chat request.
func chatBody(model, content string, maxTokens int) map[string]any {
	return map[string]any{"model": model, "max_tokens": maxTokens,
		"messages": []map[string]string{{"role": "user", "content": content}}}
}

// batchLine is one line of a batch input file.
func batchLine(model, customID, content string, maxTokens int) []byte {
	b, _ := json.Marshal(map[string]any{"custom_id": customID, "method": "POST", "url": "/v1/chat/completions",
		"body": chatBody(model, content, maxTokens)})
	return append(b, '\n')
}
