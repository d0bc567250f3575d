package lull

import "fmt"

// Prefixes of the blob store's keys, one per kind of object. Retention rules
// and access grants (infra) are set per prefix.
const (
	PrefixInputs  = "inputs/"  // request bodies too large to travel inline
	PrefixOutputs = "outputs/" // engine responses and batches' output and error files
	PrefixFiles   = "files/"   // files clients upload (/v1/files, completed uploads)
	PrefixUploads = "uploads/" // parts of uploads in progress (/v1/uploads)
)

// KeyPrefixes lists every prefix the blob store's keys start with.
var KeyPrefixes = []string{PrefixInputs, PrefixOutputs, PrefixFiles, PrefixUploads}

// InputKey is where a generation's request body is kept when it is too
// large to travel inline.
func InputKey(tenant, generationID string) string {
	return fmt.Sprintf("%s%s/%s.json", PrefixInputs, tenant, generationID)
}

// OutputKey is where attempt n of a generation writes the engine's
// response: per attempt, so that only the attempt that wins the terminal
// transition is recorded and a late loser overwrites nothing.
func OutputKey(tenant, generationID string, attempt int) string {
	return fmt.Sprintf("%s%s/%s/%d.json", PrefixOutputs, tenant, generationID, attempt)
}

// BatchOutputKey is where a batch's output or error file named name is
// written.
func BatchOutputKey(tenant, batchID, name string) string {
	return fmt.Sprintf("%s%s/%s/%s", PrefixOutputs, tenant, batchID, name)
}

// FileKey is where an uploaded file's content is kept.
func FileKey(tenant, fileID string) string { return PrefixFiles + tenant + "/" + fileID }

// UploadPartKey is where a part of an upload in progress is kept.
func UploadPartKey(tenant, uploadID, partID string) string {
	return PrefixUploads + tenant + "/" + uploadID + "/" + partID
}
