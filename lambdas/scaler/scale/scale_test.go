package scale_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lull-ai/lull/lambdas/scaler/backlog"
	"github.com/lull-ai/lull/lambdas/scaler/emf"
	"github.com/lull-ai/lull/lambdas/scaler/scale"
	"github.com/lull-ai/lull/localstack/emutest"
	"github.com/lull-ai/lull/shared/lull"
	"github.com/lull-ai/lull/shared/sqs"
)

const namespace = "Lull"

var at = time.Date(2026, 12, 1, 20, 0, 0, 0, time.UTC)

// queue is a request queue with a fixed depth.
type queue struct {
	visible, inFlight int
	err               error
}

func (q *queue) URL() string { return "https://sqs.example/requests" }
func (q *queue) Depth(context.Context) (int, int, error) {
	return q.visible, q.inFlight, q.err
}

// groups is an in-memory Auto Scaling: capacity by group name (desired
// capacity, and serving instances when launching lags behind: in
// launching); a group not in the map fails like a missing group.
type groups struct {
	mu        sync.Mutex
	capacity  map[string]int
	launching map[string]int // desired instances not launched yet
	err       map[string]error
}

func (g *groups) Capacity(_ context.Context, name string) (int, int, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if err := g.err[name]; err != nil {
		return 0, 0, err
	}
	n, ok := g.capacity[name]
	if !ok {
		return 0, 0, &lull.Error{Code: lull.ENOTFOUND, Message: "no such group " + name}
	}
	return n, max(n-g.launching[name], 0), nil
}

func (g *groups) desired(name string) int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.capacity[name]
}

func (g *groups) set(name string, n int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.capacity[name] = n
}

// published is one metric document as CloudWatch would extract it.
type published struct {
	Namespace string
	Model     string
	Timestamp int64
	Values    map[string]float64
}

// parse reads the EMF lines the scaler wrote the way CloudWatch Logs
// extracts them: each line's directive names the dimension keys and
// metrics, whose values are root members.
func parse(t *testing.T, out []byte) map[string]published {
	t.Helper()
	got := map[string]published{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		var root map[string]json.RawMessage
		if err := json.Unmarshal(sc.Bytes(), &root); err != nil {
			t.Fatalf("not JSON: %q: %v", sc.Text(), err)
		}
		var meta struct {
			Timestamp         int64
			CloudWatchMetrics []struct {
				Namespace  string
				Dimensions [][]string
				Metrics    []struct{ Name, Unit string }
			}
		}
		if err := json.Unmarshal(root["_aws"], &meta); err != nil || len(meta.CloudWatchMetrics) != 1 {
			t.Fatalf("_aws = %s (%v)", root["_aws"], err)
		}
		dir := meta.CloudWatchMetrics[0]
		if !slices.EqualFunc(dir.Dimensions, [][]string{{backlog.DimensionModel}}, slices.Equal) {
			t.Fatalf("dimension sets %v, want [[%s]]", dir.Dimensions, backlog.DimensionModel)
		}
		p := published{Namespace: dir.Namespace, Timestamp: meta.Timestamp, Values: map[string]float64{}}
		if err := json.Unmarshal(root[backlog.DimensionModel], &p.Model); err != nil {
			t.Fatalf("dimension %s: %v", backlog.DimensionModel, err)
		}
		for _, m := range dir.Metrics {
			var v float64
			if err := json.Unmarshal(root[m.Name], &v); err != nil {
				t.Fatalf("metric %s = %s: %v", m.Name, root[m.Name], err)
			}
			p.Values[m.Name] = v
		}
		if _, dup := got[p.Model]; dup {
			t.Fatalf("two documents for %s", p.Model)
		}
		got[p.Model] = p
	}
	return got
}

func newScaler(t *testing.T, models []scale.Model, g scale.Groups, out *bytes.Buffer, logs *bytes.Buffer) *scale.Scaler {
	t.Helper()
	s, err := scale.New(scale.Config{
		Models: models, Groups: g, Metrics: &emf.Writer{W: out, Namespace: namespace},
		Logger: slog.New(slog.NewJSONHandler(logs, nil)), Now: func() time.Time { return at },
	})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestScale feeds queue depths and instance counts and checks the metrics
// the scaler publishes, including the scale-from-zero path: backlog with no
// instance must publish an UnservedBacklog that fires the step policy's
// alarm (threshold backlog.ScaleFromZeroThreshold, the value infra uses).
func TestScale(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name              string
		visible, inFlight int
		instances         int
		perInstance       float64
		unserved          float64
		fromZero          bool
	}{
		{"Idle", 0, 0, 0, 0, 0, false},
		{"IdleWithInstances", 0, 0, 3, 0, 0, false},
		{"ScaleFromZero", 10, 0, 0, 10, 10, true},
		{"ScaleFromZeroOneMessage", 1, 0, 0, 1, 1, true},
		{"ScaleFromZeroOrphanedInFlight", 0, 2, 0, 2, 2, true},
		{"PerInstance", 300, 100, 4, 100, 0, false},
		{"BusyEmptyQueue", 0, 128, 1, 128, 0, false},
		{"Fractional", 1, 0, 3, 1.0 / 3, 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var out, logs bytes.Buffer
			g := &groups{capacity: map[string]int{"lull-gpu-m": tc.instances}}
			s := newScaler(t, []scale.Model{{Name: "m", Queue: &queue{visible: tc.visible, inFlight: tc.inFlight}, Group: "lull-gpu-m"}}, g, &out, &logs)
			res, err := s.Scale(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			p, ok := parse(t, out.Bytes())["m"]
			if !ok {
				t.Fatalf("nothing published for m: %q", out.String())
			}
			if p.Namespace != namespace || p.Timestamp != at.UnixMilli() {
				t.Errorf("namespace %q timestamp %d", p.Namespace, p.Timestamp)
			}
			if len(p.Values) != 2 {
				t.Errorf("published %v, want exactly %s and %s", p.Values, backlog.MetricBacklogPerInstance, backlog.MetricUnservedBacklog)
			}
			if v := p.Values[backlog.MetricBacklogPerInstance]; math.Abs(v-tc.perInstance) > 1e-9 {
				t.Errorf("%s = %v, want %v", backlog.MetricBacklogPerInstance, v, tc.perInstance)
			}
			if v := p.Values[backlog.MetricUnservedBacklog]; v != tc.unserved {
				t.Errorf("%s = %v, want %v", backlog.MetricUnservedBacklog, v, tc.unserved)
			}
			if fires := p.Values[backlog.MetricUnservedBacklog] >= backlog.ScaleFromZeroThreshold; fires != tc.fromZero {
				t.Errorf("scale-from-zero alarm fires = %v, want %v", fires, tc.fromZero)
			}
			if d := res.Decisions["m"]; d.ScaleFromZero != tc.fromZero || d.Backlog != tc.visible+tc.inFlight {
				t.Errorf("decision %+v", d)
			}
		})
	}
}

// TestScaleLoop runs the group's two policies (as infra builds them from
// the backlog constants) on what the scaler publishes, minute by minute:
// the step policy adds backlog.ScaleFromZeroInstances while UnservedBacklog
// reaches the threshold; target tracking sets capacity to
// ceil(capacity × BacklogPerInstance / target). The group must leave zero,
// settle at backlog.DesiredInstances and return to zero once the queue
// drains.
func TestScaleLoop(t *testing.T) {
	t.Parallel()
	const target, maxN = backlog.DefaultTargetBacklogPerInstance, 20
	for _, tc := range []struct {
		name    string
		visible int
		want    int
	}{
		{"OneMessage", 1, 1},
		{"Thousand", 1000, 8},
		{"Huge", 1 << 20, maxN},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			g := &groups{capacity: map[string]int{"grp": 0}}
			q := &queue{visible: tc.visible}
			var out, logs bytes.Buffer
			s := newScaler(t, []scale.Model{{Name: "m", Queue: q, Group: "grp"}}, g, &out, &logs)
			minute := func() {
				t.Helper()
				out.Reset()
				if _, err := s.Scale(context.Background()); err != nil {
					t.Fatal(err)
				}
				p := parse(t, out.Bytes())["m"]
				capacity := g.desired("grp")
				var data []backlog.Datum
				for name, v := range p.Values {
					data = append(data, backlog.Datum{Name: name, Value: v})
				}
				next := backlog.NextCapacity(capacity, data, target, maxN)
				g.set("grp", next)
			}
			for range 10 {
				minute()
			}
			if got := g.desired("grp"); got != tc.want || got != backlog.DesiredInstances(tc.visible, target, 0, maxN) {
				t.Fatalf("capacity after 10 minutes = %d, want %d", got, tc.want)
			}
			q.visible = 0
			minute()
			if got := g.desired("grp"); got != 0 {
				t.Fatalf("capacity with an empty queue = %d, want 0", got)
			}
		})
	}
}

// TestScaleFromZeroWaitsForLaunch: the step policy has raised the group's
// desired capacity from zero, but no instance shows yet (launching takes a
// while; spot capacity may be short for many minutes). The group is not
// empty, so UnservedBacklog must be 0: counting only launched instances
// would fire the step policy every minute, one more instance each time.
func TestScaleFromZeroWaitsForLaunch(t *testing.T) {
	t.Parallel()
	const target, maxN = backlog.DefaultTargetBacklogPerInstance, 20
	g := &groups{capacity: map[string]int{"grp": 0}, launching: map[string]int{"grp": maxN}}
	q := &queue{visible: 1}
	var out, logs bytes.Buffer
	s := newScaler(t, []scale.Model{{Name: "m", Queue: q, Group: "grp"}}, g, &out, &logs)
	for minute := range 10 {
		out.Reset()
		res, err := s.Scale(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		p := parse(t, out.Bytes())["m"]
		if minute > 0 && (p.Values[backlog.MetricUnservedBacklog] != 0 || res.Decisions["m"].ScaleFromZero) {
			t.Fatalf("minute %d: desired %d, none launched: UnservedBacklog %v fires the step policy again",
				minute, g.desired("grp"), p.Values[backlog.MetricUnservedBacklog])
		}
		var data []backlog.Datum
		for name, v := range p.Values {
			data = append(data, backlog.Datum{Name: name, Value: v})
		}
		g.set("grp", backlog.NextCapacity(g.desired("grp"), data, target, maxN))
	}
	if got := g.desired("grp"); got != backlog.ScaleFromZeroInstances {
		t.Fatalf("desired capacity after 10 minutes without a launch = %d, want %d", got, backlog.ScaleFromZeroInstances)
	}
}

// failingSink fails for one model and passes the rest to next.
type failingSink struct {
	model string
	next  scale.Sink
}

func (f failingSink) Publish(ctx context.Context, at time.Time, dims map[string]string, data []backlog.Datum) error {
	if dims[backlog.DimensionModel] == f.model {
		return errors.New("sink down")
	}
	return f.next.Publish(ctx, at, dims, data)
}

// TestScaleIsolatesFailures: one model's broken queue, missing group,
// throttled Auto Scaling, missing configuration or failed publish neither
// stops nor changes the other models; each failure is returned and logged
// with the model, queue and group.
func TestScaleIsolatesFailures(t *testing.T) {
	t.Parallel()
	var out, logs bytes.Buffer
	g := &groups{
		capacity: map[string]int{"g-ok": 2, "g-queue": 1, "g-sink": 1, "g-ok2": 0},
		err:      map[string]error{"g-throttled": &lull.Error{Code: lull.EUNAVAILABLE, Message: "Throttling"}},
	}
	queues := map[string]scale.Queue{
		"a-queue-fails": &queue{err: errors.New("sqs down")},
		"b-no-group":    &queue{visible: 1},
		"c-ok":          &queue{visible: 10},
		"d-throttled":   &queue{visible: 1},
		"e-missing":     &queue{visible: 1},
		"f-sink-fails":  &queue{visible: 1},
		"g-ok":          &queue{visible: 3},
	}
	names := map[string]string{
		"a-queue-fails": "g-queue", "c-ok": "g-ok", "d-throttled": "g-throttled", "e-missing": "g-missing",
		"f-sink-fails": "g-sink", "g-ok": "g-ok2", "h-no-queue": "g-orphan",
	}
	s := newScaler(t, scale.Models(queues, names), g, &out, &logs)
	s.Metrics = failingSink{model: "f-sink-fails", next: s.Metrics}
	res, err := s.Scale(context.Background())
	if err == nil {
		t.Fatal("no error")
	}
	wantFailed := []string{"a-queue-fails", "b-no-group", "d-throttled", "e-missing", "f-sink-fails", "h-no-queue"}
	if !slices.Equal(res.Failed, wantFailed) {
		t.Errorf("Failed = %v, want %v", res.Failed, wantFailed)
	}
	for _, m := range wantFailed {
		if !strings.Contains(err.Error(), "scale "+m+":") {
			t.Errorf("error does not name %s: %v", m, err)
		}
	}
	got := parse(t, out.Bytes())
	if len(got) != 2 || got["c-ok"].Values[backlog.MetricBacklogPerInstance] != 5 || got["g-ok"].Values[backlog.MetricUnservedBacklog] != 3 {
		t.Errorf("published %+v, want c-ok (BacklogPerInstance 5) and g-ok (UnservedBacklog 3) only", got)
	}
	// Logs: one record per model, failures at ERROR with model, queue, group.
	records := map[string]map[string]any{}
	for _, line := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
		var r map[string]any
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatal(err)
		}
		records[fmt.Sprint(r["model"])] = r
	}
	for _, m := range wantFailed {
		r := records[m]
		if r == nil || r["level"] != "ERROR" || r["err"] == nil {
			t.Errorf("%s: log %v", m, r)
			continue
		}
		if _, ok := r["queue"]; !ok {
			t.Errorf("%s: log has no queue: %v", m, r)
		}
		if r["group"] != names[m] {
			t.Errorf("%s: log group %v, want %q", m, r["group"], names[m])
		}
	}
	if r := records["c-ok"]; r == nil || r["level"] != "INFO" || r["group"] != "g-ok" || r["queue"] != "https://sqs.example/requests" {
		t.Errorf("c-ok: log %v", r)
	}
}

func TestModels(t *testing.T) {
	t.Parallel()
	q := &queue{}
	got := scale.Models(map[string]scale.Queue{"b": q, "a": q}, map[string]string{"a": "ga", "c": "gc"})
	want := []scale.Model{{Name: "a", Queue: q, Group: "ga"}, {Name: "b", Queue: q}, {Name: "c", Group: "gc"}}
	if !slices.Equal(got, want) {
		t.Fatalf("Models = %+v, want %+v", got, want)
	}
}

// TestScaleSQS reads real queue depths from the SQS emulators (in-process
// goaws, and fauxqs when LULL_EXT_SQS_URL is set): visible and in-flight
// messages both count, and with no instance they are all unserved.
func TestScaleSQS(t *testing.T) {
	t.Parallel()
	for _, b := range emutest.Backends(t) {
		t.Run(b.Name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			url, _, err := sqs.CreateQueue(ctx, b.Clients.SQS, "scale-"+lull.NewID("t")[2:], 30*time.Second, 0)
			if err != nil {
				t.Fatal(err)
			}
			q := sqs.New(b.Clients.SQS, url)
			for i := range 5 {
				if err := q.Send(ctx, []byte(fmt.Sprint(i)), "", 0); err != nil {
					t.Fatal(err)
				}
			}
			// Two messages in flight, as a worker holds them.
			inFlight := 0
			for inFlight < 2 {
				msgs, err := q.Receive(ctx, 2-inFlight, time.Second, time.Minute)
				if err != nil {
					t.Fatal(err)
				}
				inFlight += len(msgs)
			}
			g := &groups{capacity: map[string]int{"grp": 0}}
			var out, logs bytes.Buffer
			s := newScaler(t, []scale.Model{{Name: "m", Queue: q, Group: "grp"}}, g, &out, &logs)
			// goaws counts in-flight messages in ApproximateNumberOfMessages
			// too (SQS and fauxqs count only visible ones): its backlog reads
			// 5 visible+in-flight plus the 2 in flight again.
			want := 5.0
			if b.Name == "inprocess" {
				want = 7
			}
			if _, err := s.Scale(ctx); err != nil {
				t.Fatal(err)
			}
			p := parse(t, out.Bytes())["m"]
			if p.Values[backlog.MetricUnservedBacklog] != want || p.Values[backlog.MetricBacklogPerInstance] != want {
				t.Fatalf("with no instance: %v, want UnservedBacklog and BacklogPerInstance %v", p.Values, want)
			}
			g.set("grp", 2)
			out.Reset()
			if _, err := s.Scale(ctx); err != nil {
				t.Fatal(err)
			}
			if p = parse(t, out.Bytes())["m"]; p.Values[backlog.MetricUnservedBacklog] != 0 || p.Values[backlog.MetricBacklogPerInstance] != want/2 {
				t.Fatalf("with two instances: %v, want UnservedBacklog 0 and BacklogPerInstance %v", p.Values, want/2)
			}
		})
	}
}
