package memory

import "github.com/lull-ai/lull/shared/lull"

// FaultFunc decides whether a call fails. It is called with the method's
// name ("Start", "Put", "SetVisibility", …) and the key it concerns (a
// generation, webhook, batch or file ID, a blob key, a receipt handle, a
// message group) before the call touches any state; a non-nil error is
// returned to the caller as is. It may also block or record, to observe or
// order calls. It must be safe for concurrent use.
type FaultFunc func(op, key string) error

// Unavailable returns the error an adapter returns when its service is
// throttling or down (EUNAVAILABLE), for use in a FaultFunc.
func Unavailable(op string) error {
	return &lull.Error{Code: lull.EUNAVAILABLE, Message: "The service is busy; retry later.", Err: errInjected(op)}
}

type errInjected string

func (e errInjected) Error() string { return "memory: injected fault in " + string(e) }

// FailOn returns a FaultFunc that fails calls of op (any key) with err.
func FailOn(op string, err error) FaultFunc {
	return func(o, _ string) error {
		if o == op {
			return err
		}
		return nil
	}
}
