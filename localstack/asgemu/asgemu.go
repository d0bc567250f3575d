// Package asgemu is a small Amazon EC2 Auto Scaling emulator speaking the
// service's awsquery protocol (form-encoded POST, XML answers), for the
// calls a GPU worker makes about its own instance: RecordLifecycleActionHeartbeat,
// CompleteLifecycleAction and SetInstanceHealth. It keeps, per instance,
// whether a termination lifecycle action is pending, and answers like
// Auto Scaling when none is: ValidationError "No active Lifecycle Action
// found". Every accepted call is recorded for tests to inspect.
//
// The real SDK client reaches it with BaseEndpoint (or, for a separate
// process, AWS_ENDPOINT_URL_AUTO_SCALING).
package asgemu

import (
	"encoding/xml"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"
)

// Call is one accepted request.
type Call struct {
	Action string
	// Params are the request's form values other than Action and Version.
	Params map[string]string
	At     time.Time
}

// Server is the emulator; its zero value is not usable, call New.
type Server struct {
	mu      sync.Mutex
	pending map[string]string // instance ID → group with a pending termination action
	health  map[string]string // instance ID → last health status set
	calls   []Call
}

// New returns an emulator with no pending lifecycle actions.
func New() *Server {
	return &Server{pending: map[string]string{}, health: map[string]string{}}
}

// Terminate starts a termination lifecycle action for instance in group,
// as Auto Scaling does on scale-in: the instance waits in
// Terminating:Wait until the action is completed.
func (s *Server) Terminate(group, instance string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pending[instance] = group
}

// Pending reports whether a termination lifecycle action waits for instance.
func (s *Server) Pending(instance string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.pending[instance]
	return ok
}

// Health returns the last health status set for instance ("" if none).
func (s *Server) Health(instance string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.health[instance]
}

// Calls returns the accepted calls of action ("" for all), oldest first.
func (s *Server) Calls(action string) []Call {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Call
	for _, c := range s.calls {
		if action == "" || c.Action == action {
			out = append(out, c)
		}
	}
	return out
}

// ServeHTTP answers one awsquery request.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || !strings.HasPrefix(r.Header.Get("Content-Type"), "application/x-www-form-urlencoded") {
		writeError(w, http.StatusBadRequest, "InvalidAction", "want a form-encoded POST")
		return
	}
	if !strings.HasPrefix(r.Header.Get("Authorization"), "AWS4-HMAC-SHA256 ") {
		writeError(w, http.StatusForbidden, "MissingAuthenticationToken", "request is not signed")
		return
	}
	if err := r.ParseForm(); err != nil {
		writeError(w, http.StatusBadRequest, "MalformedQueryString", err.Error())
		return
	}
	f := r.PostForm
	action := f.Get("Action")
	if v := f.Get("Version"); v != "2011-01-01" {
		writeError(w, http.StatusBadRequest, "InvalidAction", fmt.Sprintf("version %q", v))
		return
	}
	required := map[string][]string{
		"RecordLifecycleActionHeartbeat": {"AutoScalingGroupName", "LifecycleHookName", "InstanceId"},
		"CompleteLifecycleAction":        {"AutoScalingGroupName", "LifecycleHookName", "InstanceId", "LifecycleActionResult"},
		"SetInstanceHealth":              {"InstanceId", "HealthStatus"},
	}[action]
	if required == nil {
		writeError(w, http.StatusBadRequest, "InvalidAction", fmt.Sprintf("action %q is not emulated", action))
		return
	}
	params := map[string]string{}
	for k := range f {
		if k != "Action" && k != "Version" {
			params[k] = f.Get(k)
		}
	}
	for _, k := range required {
		if params[k] == "" {
			writeError(w, http.StatusBadRequest, "ValidationError", k+" is required")
			return
		}
	}
	id := params["InstanceId"]

	s.mu.Lock()
	defer s.mu.Unlock()
	switch action {
	case "RecordLifecycleActionHeartbeat", "CompleteLifecycleAction":
		if g, ok := s.pending[id]; !ok || g != params["AutoScalingGroupName"] {
			writeError(w, http.StatusBadRequest, "ValidationError", "No active Lifecycle Action found with instance ID "+id)
			return
		}
		if action == "CompleteLifecycleAction" {
			if res := params["LifecycleActionResult"]; res != "CONTINUE" && res != "ABANDON" {
				writeError(w, http.StatusBadRequest, "ValidationError", "LifecycleActionResult must be CONTINUE or ABANDON")
				return
			}
			delete(s.pending, id)
		}
	case "SetInstanceHealth":
		if st := params["HealthStatus"]; st != "Healthy" && st != "Unhealthy" {
			writeError(w, http.StatusBadRequest, "ValidationError", "HealthStatus must be Healthy or Unhealthy")
			return
		}
		s.health[id] = params["HealthStatus"]
	}
	s.calls = append(s.calls, Call{Action: action, Params: params, At: time.Now()})
	w.Header().Set("Content-Type", "text/xml")
	fmt.Fprintf(w, `<%sResponse xmlns="http://autoscaling.amazonaws.com/doc/2011-01-01/"><%sResult/><ResponseMetadata><RequestId>req-%d</RequestId></ResponseMetadata></%sResponse>`,
		action, action, len(s.calls), action)
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "text/xml")
	w.WriteHeader(status)
	var b strings.Builder
	_ = xml.EscapeText(&b, []byte(msg))
	fmt.Fprintf(w, `<ErrorResponse xmlns="http://autoscaling.amazonaws.com/doc/2011-01-01/"><Error><Type>Sender</Type><Code>%s</Code><Message>%s</Message></Error><RequestId>req-err</RequestId></ErrorResponse>`,
		code, b.String())
}
