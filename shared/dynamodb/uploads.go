package dynamodb

import (
	"context"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/attributevalue"
	ddb "github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/lull-ai/lull/shared/lull"
)

type partRecord struct {
	ID        string `dynamodbav:"id"`
	Bytes     int64  `dynamodbav:"bytes"`
	CreatedAt int64  `dynamodbav:"created_at"`
	Key       string `dynamodbav:"blob_key"`
}

type uploadRecord struct {
	PK        string `dynamodbav:"pk"`
	SK        string `dynamodbav:"sk"`
	ID        string `dynamodbav:"id"`
	Tenant    string `dynamodbav:"tenant"`
	Filename  string `dynamodbav:"filename"`
	Purpose   string `dynamodbav:"purpose"`
	MimeType  string `dynamodbav:"mime_type,omitempty"`
	Bytes     int64  `dynamodbav:"bytes"`
	Status    string `dynamodbav:"status"`
	CreatedAt int64  `dynamodbav:"created_at"`
	ExpiresAt int64  `dynamodbav:"expires_at,omitempty"`
	// Parts is absent until the first part: minidyn (the in-process
	// emulator) mishandles an empty list attribute, which breaks decoding
	// and later queries over the table. AddUploadPart copes with either.
	Parts  []partRecord `dynamodbav:"parts,omitempty"`
	FileID string       `dynamodbav:"file_id,omitempty"`
	TTL    int64        `dynamodbav:"ttl,omitempty"`
}

func uploadPK(id string) string { return "UPLOAD#" + id }

func decodeUpload(item map[string]types.AttributeValue) (*lull.Upload, error) {
	var r uploadRecord
	if err := attributevalue.UnmarshalMap(item, &r); err != nil {
		return nil, fmt.Errorf("dynamodb: decode upload: %w", err)
	}
	u := &lull.Upload{ID: r.ID, Tenant: r.Tenant, Filename: r.Filename, Purpose: r.Purpose, MimeType: r.MimeType,
		Bytes: r.Bytes, Status: lull.UploadStatus(r.Status), CreatedAt: fromMS(r.CreatedAt), ExpiresAt: fromMS(r.ExpiresAt),
		FileID: r.FileID}
	for _, p := range r.Parts {
		u.Parts = append(u.Parts, lull.UploadPart{ID: p.ID, Bytes: p.Bytes, CreatedAt: fromMS(p.CreatedAt), Key: p.Key})
	}
	return u, nil
}

// CreateUpload implements lull.Uploads; ECONFLICT when the ID exists.
func (s *Store) CreateUpload(ctx context.Context, u *lull.Upload) error {
	r := uploadRecord{
		PK: uploadPK(u.ID), SK: "UPLOAD", ID: u.ID, Tenant: u.Tenant, Filename: u.Filename, Purpose: u.Purpose,
		MimeType: u.MimeType, Bytes: u.Bytes, Status: string(u.Status), CreatedAt: ms(u.CreatedAt), ExpiresAt: ms(u.ExpiresAt),
		FileID: u.FileID, TTL: u.CreatedAt.Add(UploadRetention).Unix(),
	}
	if r.Status == "" {
		r.Status = string(lull.UploadPending)
	}
	for _, p := range u.Parts {
		r.Parts = append(r.Parts, partRecord{ID: p.ID, Bytes: p.Bytes, CreatedAt: ms(p.CreatedAt), Key: p.Key})
	}
	item, err := attributevalue.MarshalMap(r)
	if err != nil {
		return fmt.Errorf("dynamodb: marshal upload %s: %w", u.ID, err)
	}
	return s.putNew(ctx, item, "upload "+u.ID)
}

// GetUpload implements lull.Uploads.
func (s *Store) GetUpload(ctx context.Context, id string) (*lull.Upload, error) {
	item, err := s.getItem(ctx, uploadPK(id), "UPLOAD", true, "upload "+id, "No such Upload object: "+id)
	if err != nil {
		return nil, err
	}
	return decodeUpload(item)
}

// notPending turns a failed "still pending" condition on an upload into
// ENOTFOUND when the upload is missing and ECONFLICT otherwise.
func (s *Store) notPending(ctx context.Context, id string) error {
	u, err := s.GetUpload(ctx, id)
	if err != nil {
		return err
	}
	return lull.Errorf(lull.ECONFLICT, "Upload %s is %s, not pending.", id, u.Status)
}

// AddUploadPart implements lull.Uploads. Parts are appended in call order;
// ENOTFOUND when the upload is missing.
func (s *Store) AddUploadPart(ctx context.Context, uploadID string, p lull.UploadPart) error {
	part, err := attributevalue.Marshal([]partRecord{{ID: p.ID, Bytes: p.Bytes, CreatedAt: ms(p.CreatedAt), Key: p.Key}})
	if err != nil {
		return fmt.Errorf("dynamodb: marshal upload part: %w", err)
	}
	_, err = s.c.UpdateItem(ctx, &ddb.UpdateItemInput{
		TableName: &s.table, Key: key(uploadPK(uploadID), "UPLOAD"),
		UpdateExpression:         aws.String("SET parts = list_append(if_not_exists(parts, :none), :part)"),
		ConditionExpression:      aws.String("attribute_exists(pk) AND #st = :pending"),
		ExpressionAttributeNames: map[string]string{"#st": "status"},
		ExpressionAttributeValues: map[string]types.AttributeValue{
			":part": part, ":none": &types.AttributeValueMemberL{Value: []types.AttributeValue{}},
			":pending": str(string(lull.UploadPending)),
		},
	})
	if isConditionFailed(err) {
		return s.notPending(ctx, uploadID)
	}
	return wrap(err, "add part to upload %s", uploadID)
}

// FinishUpload implements lull.Uploads. status must not be pending;
// ENOTFOUND when the upload is missing.
func (s *Store) FinishUpload(ctx context.Context, id string, status lull.UploadStatus, fileID string) (*lull.Upload, error) {
	if status == lull.UploadPending || status == "" {
		return nil, fmt.Errorf("dynamodb: finish upload %s: %q is not a final status", id, status)
	}
	set := "SET #st = :to"
	vals := map[string]types.AttributeValue{":to": str(string(status)), ":pending": str(string(lull.UploadPending))}
	if fileID != "" {
		set += ", file_id = :file"
		vals[":file"] = str(fileID)
	}
	out, err := s.c.UpdateItem(ctx, &ddb.UpdateItemInput{
		TableName: &s.table, Key: key(uploadPK(id), "UPLOAD"),
		UpdateExpression:          aws.String(set),
		ConditionExpression:       aws.String("attribute_exists(pk) AND #st = :pending"),
		ExpressionAttributeNames:  map[string]string{"#st": "status"},
		ExpressionAttributeValues: vals,
		ReturnValues:              types.ReturnValueAllNew,
	})
	if isConditionFailed(err) {
		return nil, s.notPending(ctx, id)
	}
	if err != nil {
		return nil, wrap(err, "finish upload %s as %s", id, status)
	}
	return decodeUpload(out.Attributes)
}
