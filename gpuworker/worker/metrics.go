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
		} {
			fmt.Fprintf(rw, "# HELP %s %s\n# TYPE %s %s\n%s{model=%q} %d\n", m.name, m.help, m.name, m.typ, m.name, w.cfg.Model, m.v)
		}
	})
}
