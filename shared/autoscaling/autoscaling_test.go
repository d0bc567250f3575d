package autoscaling_test

import (
	"context"
	"encoding/xml"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	assdk "github.com/aws/aws-sdk-go-v2/service/autoscaling"

	"github.com/lull-ai/lull/shared/autoscaling"
	"github.com/lull-ai/lull/shared/lull"
)

// server speaks the awsquery protocol of the Auto Scaling API for one
// action, DescribeAutoScalingGroups: a form-encoded POST, answered with the
// service's XML document, or its ErrorResponse. groups maps a group name to
// its instances' lifecycle states; a name in fail answers that error code.
type server struct {
	groups map[string][]string
	// desired overrides a group's desired capacity (default: its instance count)
	desired map[string]int
	fail    map[string]string

	mu    sync.Mutex
	calls []string // the AutoScalingGroupNames of each request
}

func (s *server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || !strings.HasPrefix(r.Header.Get("Content-Type"), "application/x-www-form-urlencoded") {
		s.error(w, http.StatusBadRequest, "Sender", "InvalidAction", "want a form-encoded POST")
		return
	}
	if !strings.HasPrefix(r.Header.Get("Authorization"), "AWS4-HMAC-SHA256 ") {
		s.error(w, http.StatusForbidden, "Sender", "MissingAuthenticationToken", "request is not signed")
		return
	}
	if err := r.ParseForm(); err != nil {
		s.error(w, http.StatusBadRequest, "Sender", "MalformedQueryString", err.Error())
		return
	}
	if a, v := r.PostForm.Get("Action"), r.PostForm.Get("Version"); a != "DescribeAutoScalingGroups" || v != "2011-01-01" {
		s.error(w, http.StatusBadRequest, "Sender", "InvalidAction", fmt.Sprintf("action %q version %q", a, v))
		return
	}
	if r.PostForm.Get("IncludeInstances") == "false" {
		s.error(w, http.StatusBadRequest, "Sender", "ValidationError", "the test server always includes instances")
		return
	}
	var names []string
	for i := 1; ; i++ {
		n := r.PostForm.Get(fmt.Sprintf("AutoScalingGroupNames.member.%d", i))
		if n == "" {
			break
		}
		names = append(names, n)
	}
	s.mu.Lock()
	s.calls = append(s.calls, strings.Join(names, ","))
	s.mu.Unlock()

	type instance struct {
		InstanceID     string `xml:"InstanceId"`
		LifecycleState string
		HealthStatus   string
	}
	type group struct {
		AutoScalingGroupName string
		DesiredCapacity      int
		Instances            []instance `xml:"Instances>member"`
	}
	var out struct {
		XMLName   xml.Name `xml:"DescribeAutoScalingGroupsResponse"`
		NS        string   `xml:"xmlns,attr"`
		Groups    []group  `xml:"DescribeAutoScalingGroupsResult>AutoScalingGroups>member"`
		RequestID string   `xml:"ResponseMetadata>RequestId"`
	}
	out.NS, out.RequestID = "http://autoscaling.amazonaws.com/doc/2011-01-01/", "req-1"
	for _, n := range names {
		if code, ok := s.fail[n]; ok {
			s.error(w, http.StatusBadRequest, "Sender", code, "injected")
			return
		}
		states, ok := s.groups[n]
		if !ok {
			continue // the real API leaves unknown names out, without an error
		}
		g := group{AutoScalingGroupName: n, DesiredCapacity: len(states)}
		if d, ok := s.desired[n]; ok {
			g.DesiredCapacity = d
		}
		for i, st := range states {
			g.Instances = append(g.Instances, instance{InstanceID: fmt.Sprintf("i-%04d", i), LifecycleState: st, HealthStatus: "Healthy"})
		}
		out.Groups = append(out.Groups, g)
	}
	w.Header().Set("Content-Type", "text/xml")
	_ = xml.NewEncoder(w).Encode(out)
}

func (s *server) error(w http.ResponseWriter, status int, typ, code, msg string) {
	w.Header().Set("Content-Type", "text/xml")
	w.WriteHeader(status)
	fmt.Fprintf(w, `<ErrorResponse xmlns="http://autoscaling.amazonaws.com/doc/2011-01-01/"><Error><Type>%s</Type><Code>%s</Code><Message>%s</Message></Error><RequestId>req-err</RequestId></ErrorResponse>`,
		typ, code, msg)
}

func newGroups(t *testing.T, s *server) *autoscaling.Groups {
	t.Helper()
	ts := httptest.NewServer(s)
	t.Cleanup(ts.Close)
	return autoscaling.New(assdk.New(assdk.Options{
		Region:           "us-east-1",
		BaseEndpoint:     aws.String(ts.URL),
		Credentials:      credentials.NewStaticCredentialsProvider("test", "test", ""),
		RetryMaxAttempts: 1, // errors are under test; no backoff
	}))
}

func TestCapacity(t *testing.T) {
	t.Parallel()
	s := &server{
		groups: map[string][]string{
			"empty":      nil,
			"in-service": {"InService", "InService"},
			"launching":  {"Pending", "Pending:Wait", "Pending:Proceed", "InService"},
			// Draining, standby, detaching and warm-pool instances take no new work.
			"mixed": {"InService", "Terminating", "Terminating:Wait", "Terminating:Proceed", "Standby", "EnteringStandby",
				"Detaching", "Warmed:Running", "Warmed:Pending", "Terminated", "Quarantined"},
		},
		// Desired capacity counts instances not launched yet, and drops
		// before terminating instances leave.
		desired: map[string]int{"not-launched": 2, "mixed": 1},
		fail:    map[string]string{"throttled": "Throttling", "contended": "ResourceContention", "denied": "AccessDenied"},
	}
	s.groups["not-launched"] = []string{"Pending"}
	g := newGroups(t, s)
	for _, tc := range []struct {
		name, group   string
		desired, want int
		code          string // lull error code; "" for success, "-" for a plain error
	}{
		{"OK/Empty", "empty", 0, 0, ""},
		{"OK/InService", "in-service", 2, 2, ""},
		{"OK/PendingCounts", "launching", 4, 4, ""},
		{"OK/OnlyServing", "mixed", 1, 1, ""},
		{"OK/DesiredNotLaunched", "not-launched", 2, 1, ""},
		{"ErrNotFound", "no-such-group", 0, 0, lull.ENOTFOUND},
		{"ErrThrottled", "throttled", 0, 0, lull.EUNAVAILABLE},
		{"ErrContention", "contended", 0, 0, lull.EUNAVAILABLE},
		{"ErrDenied", "denied", 0, 0, "-"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			desired, got, err := g.Capacity(context.Background(), tc.group)
			switch {
			case tc.code == "" && err != nil:
				t.Fatalf("Capacity(%s): %v", tc.group, err)
			case tc.code == "-":
				if err == nil || lull.ErrorCode(err) != lull.EINTERNAL || !strings.Contains(err.Error(), tc.group) {
					t.Fatalf("Capacity(%s) error = %v, want a plain error naming the group", tc.group, err)
				}
			case tc.code != "":
				if got := lull.ErrorCode(err); got != tc.code || !strings.Contains(err.Error(), tc.group) {
					t.Fatalf("Capacity(%s) error = %v (code %q), want code %s naming the group", tc.group, err, got, tc.code)
				}
			}
			if desired != tc.desired || got != tc.want {
				t.Fatalf("Capacity(%s) = desired %d, serving %d; want %d, %d", tc.group, desired, got, tc.desired, tc.want)
			}
		})
	}
}

// TestCapacityAsksForOneGroup checks the request itself: one call per
// lookup, naming exactly that group.
func TestCapacityAsksForOneGroup(t *testing.T) {
	t.Parallel()
	s := &server{groups: map[string][]string{"a": {"InService"}}}
	g := newGroups(t, s)
	if _, _, err := g.Capacity(context.Background(), "a"); err != nil {
		t.Fatal(err)
	}
	if len(s.calls) != 1 || s.calls[0] != "a" {
		t.Fatalf("requests named %q, want one naming a", s.calls)
	}
}
