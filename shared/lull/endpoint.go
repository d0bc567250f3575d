package lull

import "strings"

// Endpoints of the embeddings and Responses APIs; EndpointChat and
// EndpointCompletions are beside Endpoint.
const (
	EndpointEmbeddings Endpoint = "/embeddings"
	EndpointResponses  Endpoint = "/responses"
)

// Endpoints lists every endpoint lull runs, in the order documentation
// lists them.
var Endpoints = []Endpoint{EndpointChat, EndpointCompletions, EndpointEmbeddings, EndpointResponses}

// EndpointFromPath returns the endpoint of an OpenAI path such as
// "/v1/embeddings" (the form batch lines and batch objects use), and false
// for a path lull does not run.
func EndpointFromPath(path string) (Endpoint, bool) {
	rest, ok := strings.CutPrefix(path, "/v1")
	if !ok {
		return "", false
	}
	for _, e := range Endpoints {
		if string(e) == rest {
			return e, true
		}
	}
	return "", false
}

// Path returns the endpoint's OpenAI path, e.g. "/v1/chat/completions".
func (e Endpoint) Path() string { return "/v1" + string(e) }

// Task is what a served model does: engines serve either generation
// (chat, completions, responses) or embeddings (vLLM's pooling runner).
type Task string

// The tasks a model can serve.
const (
	TaskGenerate Task = "generate"
	TaskEmbed    Task = "embed"
)

// Valid reports whether t is a known task.
func (t Task) Valid() bool { return t == TaskGenerate || t == TaskEmbed }

// Serves reports whether a model of task t answers requests to e. The zero
// Task is TaskGenerate, so configurations that name no task keep working.
func (t Task) Serves(e Endpoint) bool {
	if t == TaskEmbed {
		return e == EndpointEmbeddings
	}
	return e != EndpointEmbeddings
}

// ResponseID returns the Responses API ID of a generation: "resp_" and the
// generation ID's random part. The mapping is one to one, so a response and
// its generation are the same stored object (GET /v1/generation/gen_X and
// GET /v1/responses/resp_X show the same work).
func ResponseID(generationID string) string {
	return "resp_" + strings.TrimPrefix(generationID, "gen_")
}

// GenerationIDOfResponse returns the generation ID behind a Responses API
// ID, and false when id is not one that ResponseID makes.
func GenerationIDOfResponse(id string) (string, bool) {
	rest, ok := strings.CutPrefix(id, "resp_")
	if !ok {
		return "", false
	}
	gen := "gen_" + rest
	return gen, ValidID("gen", gen)
}

// Event types of responses, as OpenAI names them. A response's generation
// announces these instead of generation.*, and also announces its
// cancellation.
const (
	EventResponseCompleted = "response.completed"
	EventResponseFailed    = "response.failed"
	EventResponseCancelled = "response.cancelled"
	// EventResponseIncomplete is accepted in subscriptions, as OpenAI
	// lists it, but lull announces a response that stopped at
	// max_output_tokens as response.completed (its status says
	// incomplete).
	EventResponseIncomplete = "response.incomplete"
)

// EventTypeOf returns the event type announcing g's terminal status, or ""
// when none is sent: generation.* (see EventTypeFor) for chat, completions
// and embeddings; response.* for responses, where an expired response
// reads as failed (see genview.ResponseStatus).
func EventTypeOf(g *Generation) string {
	if g.Endpoint != EndpointResponses {
		return EventTypeFor(g.Status)
	}
	switch g.Status {
	case StatusCompleted:
		return EventResponseCompleted
	case StatusFailed, StatusExpired:
		return EventResponseFailed
	case StatusCancelled:
		return EventResponseCancelled
	}
	return ""
}
