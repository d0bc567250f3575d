package genview

import (
	"strings"

	"github.com/lull-ai/lull/shared/lull"
)

// EventData is the data of an OpenAI-shaped event: the ID of the object
// it is about.
type EventData struct {
	ID string `json:"id"`
}

// EventObject is OpenAI's webhook event object, which the OpenAI SDKs'
// webhooks.unwrap verifies and parses.
type EventObject struct {
	ID        string    `json:"id"`
	Object    string    `json:"object"`
	Type      string    `json:"type"`
	CreatedAt int64     `json:"created_at"`
	Data      EventData `json:"data"`
}

// OpenAIShaped reports whether events of type typ are sent in OpenAI's
// event shape: response.* and batch.*, the types OpenAI itself sends.
// generation.* events are lull's own and carry the whole generation.
func OpenAIShaped(typ string) bool {
	return strings.HasPrefix(typ, "response.") || strings.HasPrefix(typ, "batch.")
}

// Event returns ev as OpenAI's event object: data.id is the response ID
// (lull.ResponseID) for response.* events and the batch ID for batch.*.
func Event(ev lull.Event) EventObject {
	id := ev.BatchID
	if strings.HasPrefix(ev.Type, "response.") {
		id = lull.ResponseID(ev.GenerationID)
	}
	return EventObject{ID: ev.ID, Object: "event", Type: ev.Type, CreatedAt: ev.CreatedAt.Unix(), Data: EventData{ID: id}}
}
