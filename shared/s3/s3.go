// Package s3 implements lull.Blobs over Amazon S3 with aws-sdk-go-v2.
package s3

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	s3sdk "github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"

	"github.com/lull-ai/lull/shared/lull"
)

// client lists the S3 calls Blobs makes.
type client interface {
	PutObject(context.Context, *s3sdk.PutObjectInput, ...func(*s3sdk.Options)) (*s3sdk.PutObjectOutput, error)
	GetObject(context.Context, *s3sdk.GetObjectInput, ...func(*s3sdk.Options)) (*s3sdk.GetObjectOutput, error)
	DeleteObject(context.Context, *s3sdk.DeleteObjectInput, ...func(*s3sdk.Options)) (*s3sdk.DeleteObjectOutput, error)
}

// presigner lists the presigning calls Blobs makes.
type presigner interface {
	PresignGetObject(context.Context, *s3sdk.GetObjectInput, ...func(*s3sdk.PresignOptions)) (*v4.PresignedHTTPRequest, error)
}

// Blobs stores objects in one bucket.
type Blobs struct {
	c      client
	p      presigner
	bucket string
	// SpoolDir is where PutStream buffers a stream before uploading it;
	// os.TempDir() when empty (Lambda's /tmp).
	SpoolDir string
}

var _ lull.Blobs = (*Blobs)(nil)

// New returns Blobs over bucket.
func New(c *s3sdk.Client, bucket string) *Blobs {
	return &Blobs{c: c, p: s3sdk.NewPresignClient(c), bucket: bucket}
}

// PutStream implements lull.Blobs. The stream is spooled to a temporary file
// (so memory stays bounded whatever its size) and sent as one PutObject from
// that seekable file, which the SDK can sign and retry; S3 takes up to 5 GB
// this way.
func (b *Blobs) PutStream(ctx context.Context, key string, r io.Reader, contentType string) (int64, error) {
	f, err := os.CreateTemp(b.SpoolDir, "lull-spool-*")
	if err != nil {
		return 0, fmt.Errorf("s3: spool %s: %w", key, err)
	}
	defer func() { f.Close(); os.Remove(f.Name()) }()
	n, err := io.Copy(f, r)
	if err != nil {
		return 0, fmt.Errorf("s3: spool %s: %w", key, err)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return 0, fmt.Errorf("s3: spool %s: %w", key, err)
	}
	_, err = b.c.PutObject(ctx, &s3sdk.PutObjectInput{
		Bucket: &b.bucket, Key: &key, Body: f, ContentType: aws.String(contentType), ContentLength: aws.Int64(n),
	})
	if err != nil {
		return 0, wrap(err, "put %s", key)
	}
	return n, nil
}

// PresignGet implements lull.Blobs.
func (b *Blobs) PresignGet(ctx context.Context, key string, ttl time.Duration) (string, error) {
	req, err := b.p.PresignGetObject(ctx, &s3sdk.GetObjectInput{Bucket: &b.bucket, Key: &key}, s3sdk.WithPresignExpires(ttl))
	if err != nil {
		return "", wrap(err, "presign %s", key)
	}
	return req.URL, nil
}

// Put implements lull.Blobs. The body is sent from a seekable reader so the
// SDK can sign and retry it over plain HTTP too.
func (b *Blobs) Put(ctx context.Context, key string, body []byte, contentType string) error {
	_, err := b.c.PutObject(ctx, &s3sdk.PutObjectInput{
		Bucket: &b.bucket, Key: &key, Body: bytes.NewReader(body), ContentType: aws.String(contentType),
		ContentLength: aws.Int64(int64(len(body))),
	})
	return wrap(err, "put %s", key)
}

// Get implements lull.Blobs.
func (b *Blobs) Get(ctx context.Context, key string) ([]byte, error) {
	r, err := b.Open(ctx, key)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("s3: read %s: %w", key, err)
	}
	return data, nil
}

// Open implements lull.Blobs.
func (b *Blobs) Open(ctx context.Context, key string) (io.ReadCloser, error) {
	out, err := b.c.GetObject(ctx, &s3sdk.GetObjectInput{Bucket: &b.bucket, Key: &key})
	if err != nil {
		return nil, wrap(err, "get %s", key)
	}
	return out.Body, nil
}

// Delete implements lull.Blobs.
func (b *Blobs) Delete(ctx context.Context, key string) error {
	_, err := b.c.DeleteObject(ctx, &s3sdk.DeleteObjectInput{Bucket: &b.bucket, Key: &key})
	if err != nil && lull.IsNotFound(wrap(err, "")) {
		return nil
	}
	return wrap(err, "delete %s", key)
}

// CreateBucket creates the bucket unless it exists. Used by the dev stack and
// tests; production buckets come from CloudFormation.
func CreateBucket(ctx context.Context, c *s3sdk.Client, bucket string) error {
	_, err := c.CreateBucket(ctx, &s3sdk.CreateBucketInput{Bucket: &bucket})
	var owned *types.BucketAlreadyOwnedByYou
	var exists *types.BucketAlreadyExists
	if err != nil && !errors.As(err, &owned) && !errors.As(err, &exists) {
		return wrap(err, "create bucket %s", bucket)
	}
	return nil
}

func wrap(err error, format string, args ...any) error {
	if err == nil {
		return nil
	}
	msg := fmt.Sprintf(format, args...)
	var nsk *types.NoSuchKey
	var nf *types.NotFound
	if errors.As(err, &nsk) || errors.As(err, &nf) {
		return &lull.Error{Code: lull.ENOTFOUND, Message: "object not found", Err: fmt.Errorf("s3: %s: %w", msg, err)}
	}
	var api smithy.APIError
	if errors.As(err, &api) {
		switch api.ErrorCode() {
		case "NoSuchKey", "NotFound":
			return &lull.Error{Code: lull.ENOTFOUND, Message: "object not found", Err: fmt.Errorf("s3: %s: %w", msg, err)}
		case "SlowDown", "ServiceUnavailable", "InternalError":
			return &lull.Error{Code: lull.EUNAVAILABLE, Message: "The service is busy; retry later.", Err: fmt.Errorf("s3: %s: %w", msg, err)}
		}
	}
	return fmt.Errorf("s3: %s: %w", msg, err)
}
