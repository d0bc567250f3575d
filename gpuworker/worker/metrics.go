package worker

import (
	"fmt"
	"net/http"
)

// MetricsHandler serves the worker's counters in Prometheus text format.
func (w *Worker) MetricsHandler() http.Handler {
	return http.HandlerFunc(func(rw http.ResponseWriter, _ *http.Request) {
		rw.Header().Set("Content-Type", "text/plain; version=0.0.4")
		s := &w.stats
		for _, m := range []struct {
			name, typ, help string
			v               int64
		}{
			{"lull_worker_received_total", "counter", "Messages received from the request queue.", s.Received.Load()},
			{"lull_worker_in_flight", "gauge", "Generations running now.", s.InFlight.Load()},
			{"lull_worker_completed_total", "counter", "Generations completed by this worker.", s.Completed.Load()},
			{"lull_worker_failed_total", "counter", "Generations this worker marked failed.", s.Failed.Load()},
			{"lull_worker_released_total", "counter", "Messages released back to the queue unfinished.", s.Released.Load()},
			{"lull_worker_skipped_total", "counter", "Deliveries skipped (already terminal or leased elsewhere).", s.Skipped.Load()},
			{"lull_worker_unstarted", "gauge", "Messages received and not yet sent to the engine (hoarded).", s.Unstarted.Load()},
			{"lull_worker_at_engine", "gauge", "Requests sent to the engine whose response is not back yet.", s.AtEngine.Load()},
		} {
			fmt.Fprintf(rw, "# HELP %s %s\n# TYPE %s %s\n%s{model=%q} %d\n", m.name, m.help, m.name, m.typ, m.name, w.cfg.Model, m.v)
		}
		if g := w.deps.Gate; g != nil {
			d := g.Decide()
			open := 0
			if d.Open {
				open = 1
			}
			fmt.Fprintf(rw, "# HELP lull_worker_gate_open Whether the load gate lets the worker take work.\n# TYPE lull_worker_gate_open gauge\nlull_worker_gate_open{model=%q,reason=%q} %d\n", w.cfg.Model, d.Reason, open)
			fmt.Fprintf(rw, "# HELP lull_worker_gate_budget Requests the gate would admit now.\n# TYPE lull_worker_gate_budget gauge\nlull_worker_gate_budget{model=%q} %d\n", w.cfg.Model, d.Budget)
			fmt.Fprintf(rw, "# HELP lull_worker_gate_reserve Engine sequences the gate keeps free for other traffic.\n# TYPE lull_worker_gate_reserve gauge\nlull_worker_gate_reserve{model=%q} %d\n", w.cfg.Model, d.Reserve)
			fmt.Fprintf(rw, "# HELP lull_worker_engine_scrape_age_seconds Age of the latest good engine scrape.\n# TYPE lull_worker_engine_scrape_age_seconds gauge\nlull_worker_engine_scrape_age_seconds{model=%q} %g\n", w.cfg.Model, g.Age().Seconds())
		}
	})
}
