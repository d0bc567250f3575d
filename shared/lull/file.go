package lull

import (
	"context"
	"time"
)

// File is an uploaded or generated file (OpenAI's file object).
type File struct {
	ID        string
	Tenant    string
	Purpose   string // "batch" for input files, "batch_output" for output and error files
	Filename  string
	Bytes     int64
	CreatedAt time.Time
	// ExpiresAt is when the file stops being served (OpenAI's
	// expires_after); zero for a file kept for the retention period.
	ExpiresAt time.Time
	// Key names the blob holding the content.
	Key string
}

// Expired reports whether f has an expiry that has passed at now.
func (f *File) Expired(now time.Time) bool { return !f.ExpiresAt.IsZero() && !now.Before(f.ExpiresAt) }

// Bounds of OpenAI's expires_after (files) and output_expires_after
// (batches): between an hour and 30 days after creation.
const (
	MinExpiresAfter = time.Hour
	MaxExpiresAfter = 30 * 24 * time.Hour
)

// File purposes.
const (
	PurposeBatch       = "batch"
	PurposeBatchOutput = "batch_output"
)

// FileListOptions selects a page of a tenant's files, newest first.
type FileListOptions struct {
	Limit   int    // 1..10000 asked; a store may return fewer per page
	After   string // files older than this ID
	Purpose string // only this purpose, when set
}

// UploadStatus is where an upload is (OpenAI's Upload object).
type UploadStatus string

// Upload statuses: pending → completed | cancelled | expired.
const (
	UploadPending   UploadStatus = "pending"
	UploadCompleted UploadStatus = "completed"
	UploadCancelled UploadStatus = "cancelled"
	UploadExpired   UploadStatus = "expired"
)

// UploadPart is one part added to an upload.
type UploadPart struct {
	ID        string
	Bytes     int64
	CreatedAt time.Time
	Key       string // blob holding the part
}

// Upload is a file sent in parts (OpenAI's Uploads API).
type Upload struct {
	ID        string
	Tenant    string
	Filename  string
	Purpose   string
	MimeType  string
	Bytes     int64 // the size the client announced
	Status    UploadStatus
	CreatedAt time.Time
	ExpiresAt time.Time
	Parts     []UploadPart
	FileID    string // set once completed
}

// Files stores file records (their content is in the blob store, under
// File.Key).
type Files interface {
	// CreateFile stores a new file record; ECONFLICT when the ID exists.
	CreateFile(ctx context.Context, f *File) error
	// GetFile returns the file or ENOTFOUND.
	GetFile(ctx context.Context, id string) (*File, error)
	// ListFiles returns a page of the tenant's files, newest first, and the
	// After cursor that continues the listing ("" at its end). A page may
	// hold fewer than Limit files (even none, when a purpose filter matched
	// nothing in the bounded part of the index it read) and still continue.
	ListFiles(ctx context.Context, tenant string, opts FileListOptions) (files []*File, next string, err error)
	// DeleteFile removes the file record; ENOTFOUND when missing.
	DeleteFile(ctx context.Context, id string) error
}

// Uploads stores uploads in progress and their parts.
type Uploads interface {
	// CreateUpload stores a new upload.
	CreateUpload(ctx context.Context, u *Upload) error
	// GetUpload returns the upload with its parts, or ENOTFOUND.
	GetUpload(ctx context.Context, id string) (*Upload, error)
	// AddUploadPart records a part of a pending upload; ECONFLICT when the
	// upload is no longer pending.
	AddUploadPart(ctx context.Context, uploadID string, p UploadPart) error
	// FinishUpload moves a pending upload to status (completed with fileID,
	// or cancelled); ECONFLICT when it is no longer pending.
	FinishUpload(ctx context.Context, id string, status UploadStatus, fileID string) (*Upload, error)
}
