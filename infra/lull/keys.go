package lull

import keys "github.com/lull-ai/lull/shared/lull"

// The bucket's key prefixes, as the runtime lays its keys out (shared/lull's
// key layouts): lifecycle rules and grants are set per prefix.
const (
	prefixInputs  = keys.PrefixInputs
	prefixOutputs = keys.PrefixOutputs
	prefixFiles   = keys.PrefixFiles
	prefixUploads = keys.PrefixUploads
)
