package httpapi

import (
	"bytes"
	"errors"
	"io"
	"mime"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/lull-ai/lull/shared/lull"
	"github.com/lull-ai/lull/shared/request"
)

// readBody reads a JSON request body within the size limit.
func (s *Server) readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || mt != "application/json" {
			return nil, lull.Errorf(lull.EUNSUPPORTED, "Content-Type must be application/json, not %q.", ct)
		}
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.cfg.MaxBodyBytes))
	if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
		return nil, lull.Errorf(lull.ETOOLARGE, "Request body is larger than %d bytes.", s.cfg.MaxBodyBytes)
	}
	if err != nil {
		return nil, &lull.Error{Code: lull.EINVALID, Message: "Could not read the request body.", Err: err}
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return nil, lull.Errorf(lull.EINVALID, "The request body is empty; send a JSON object.")
	}
	return body, nil
}

var windowRE = regexp.MustCompile(`^([0-9]{1,5})(s|m|h|d)$`)

// validate checks a slow request body for endpoint e.
func (s *Server) validate(e lull.Endpoint, body []byte) (*request.Body, error) {
	return request.Check(e, body, s.served, s.cfg.Limits)
}

// served reports whether model is served here, and what it does.
func (s *Server) served(model string) (lull.Task, bool) {
	_, ok := s.cfg.Queues[model]
	return s.cfg.Tasks[model], ok
}

// window parses a completion window ("90s", "30m", "1h", "24h", "3d") and
// checks it against [MinWindow, MaxWindow].
func (s *Server) window(h string) (time.Duration, error) {
	if h == "" {
		return s.cfg.DefaultWindow, nil
	}
	m := windowRE.FindStringSubmatch(strings.TrimSpace(h))
	if m == nil {
		return 0, lull.ParamError("X-Lull-Completion-Window", "Invalid completion window %q: use a number followed by s, m, h or d, e.g. 24h.", h)
	}
	n, _ := strconv.Atoi(m[1])
	unit := map[string]time.Duration{"s": time.Second, "m": time.Minute, "h": time.Hour, "d": 24 * time.Hour}[m[2]]
	d := time.Duration(n) * unit
	if d < s.cfg.MinWindow || d > s.cfg.MaxWindow {
		return 0, lull.ParamError("X-Lull-Completion-Window", "Completion window %s is outside the allowed range %s to %s.", h, s.cfg.MinWindow, s.cfg.MaxWindow)
	}
	return d, nil
}
