package dynamodb

import (
	"context"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/attributevalue"
	ddb "github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/lull-ai/lull/shared/lull"
)

type fileRecord struct {
	PK        string `dynamodbav:"pk"`
	SK        string `dynamodbav:"sk"`
	ID        string `dynamodbav:"id"`
	Tenant    string `dynamodbav:"tenant"`
	Purpose   string `dynamodbav:"purpose"`
	Filename  string `dynamodbav:"filename"`
	Bytes     int64  `dynamodbav:"bytes"`
	CreatedAt int64  `dynamodbav:"created_at"`
	ExpiresAt int64  `dynamodbav:"expires_at,omitempty"`
	Key       string `dynamodbav:"blob_key"`
	GSI1PK    string `dynamodbav:"gsi1pk"`
	GSI1SK    string `dynamodbav:"gsi1sk"`
	TTL       int64  `dynamodbav:"ttl,omitempty"`
}

func filePK(id string) string { return "FILE#" + id }

func (r *fileRecord) file() *lull.File {
	return &lull.File{ID: r.ID, Tenant: r.Tenant, Purpose: r.Purpose, Filename: r.Filename, Bytes: r.Bytes,
		CreatedAt: fromMS(r.CreatedAt), ExpiresAt: fromMS(r.ExpiresAt), Key: r.Key}
}

func decodeFile(item map[string]types.AttributeValue) (*lull.File, error) {
	var r fileRecord
	if err := attributevalue.UnmarshalMap(item, &r); err != nil {
		return nil, fmt.Errorf("dynamodb: decode file: %w", err)
	}
	return r.file(), nil
}

// CreateFile implements lull.Files.
func (s *Store) CreateFile(ctx context.Context, f *lull.File) error {
	item, err := attributevalue.MarshalMap(fileRecord{
		PK: filePK(f.ID), SK: "FILE", ID: f.ID, Tenant: f.Tenant, Purpose: f.Purpose, Filename: f.Filename, Bytes: f.Bytes,
		CreatedAt: ms(f.CreatedAt), ExpiresAt: ms(f.ExpiresAt), Key: f.Key, GSI1PK: "T#" + f.Tenant + "#FILES", GSI1SK: sortKey(f.CreatedAt, f.ID),
		TTL: s.fileTTL(f),
	})
	if err != nil {
		return fmt.Errorf("dynamodb: marshal file %s: %w", f.ID, err)
	}
	return s.putNew(ctx, item, "file "+f.ID)
}

// GetFile implements lull.Files.
func (s *Store) GetFile(ctx context.Context, id string) (*lull.File, error) {
	return s.getFile(ctx, id, true)
}

func (s *Store) getFile(ctx context.Context, id string, consistent bool) (*lull.File, error) {
	item, err := s.getItem(ctx, filePK(id), "FILE", consistent, "file "+id, "No such File object: "+id)
	if err != nil {
		return nil, err
	}
	return decodeFile(item)
}

// ListFiles implements lull.Files. Limit is clamped to 1..MaxFilesPage, and
// a ?purpose= filter reads at most ListBudget items; After
// must name one of the tenant's files (EINVALID otherwise).
func (s *Store) ListFiles(ctx context.Context, tenant string, opts lull.FileListOptions) ([]*lull.File, string, error) {
	limit := min(max(opts.Limit, 1), MaxFilesPage)
	var afterAt time.Time
	if opts.After != "" {
		after, err := s.getFile(ctx, opts.After, false)
		if err != nil || after.Tenant != tenant {
			return nil, "", &lull.Error{Code: lull.EINVALID, Param: "after", Message: fmt.Sprintf("No such File object: %s", opts.After)}
		}
		afterAt = after.CreatedAt
	}
	in := s.newestFirst("T#"+tenant+"#FILES", afterAt, opts.After)
	if opts.Purpose != "" {
		in.FilterExpression = aws.String("purpose = :purpose")
		in.ExpressionAttributeValues[":purpose"] = str(opts.Purpose)
	}
	var files []*lull.File
	next, err := s.listPage(ctx, in, limit, func(item map[string]types.AttributeValue) (string, error) {
		f, err := decodeFile(item)
		if err != nil {
			return "", err
		}
		files = append(files, f)
		return f.ID, nil
	})
	if err != nil {
		return nil, "", wrap(err, "list files of %s", tenant)
	}
	return files, next, nil
}

// DeleteFile implements lull.Files. It removes the record only; the blob
// is the caller's to delete.
func (s *Store) DeleteFile(ctx context.Context, id string) error {
	_, err := s.c.DeleteItem(ctx, &ddb.DeleteItemInput{TableName: &s.table, Key: key(filePK(id), "FILE"),
		ConditionExpression: aws.String("attribute_exists(pk)")})
	if isConditionFailed(err) {
		return lull.Errorf(lull.ENOTFOUND, "No such File object: %s", id)
	}
	return wrap(err, "delete file %s", id)
}
