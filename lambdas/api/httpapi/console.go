package httpapi

import "github.com/lull-ai/lull/lambdas/api/console"

// consoleRoutes serves the web console (static files; the browser calls the
// API with the user's key). The console needs no API key to load.
func (s *Server) consoleRoutes() {
	h := console.Handler()
	s.mux.Handle("/console", h)
	s.mux.Handle(console.Prefix, h)
}
