package httpapi

import (
	"fmt"
	"net/http"

	"github.com/lull-ai/lull/lambdas/api/console"
	"github.com/lull-ai/lull/shared/lull"
)

// consoleRoutes serves the web console (static files; the browser calls the
// API with the user's key). The console needs no API key to load.
func (s *Server) consoleRoutes() {
	files := console.Handler()
	// The console answers GET and HEAD; any other method is refused here,
	// in OpenAI's error envelope like every other refusal of this server.
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			s.writeError(w, r, &lull.Error{Code: codeMethodNotAllowed, Message: fmt.Sprintf("Method %s is not allowed on %s.", r.Method, r.URL.Path)})
			return
		}
		files.ServeHTTP(w, r)
	})
	s.mux.Handle("/console", h)
	s.mux.Handle(console.Prefix, h)
}
