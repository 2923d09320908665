// Package profiles keeps the profile (nickname and avatar) a WeChat user
// showed an official account by consenting to snsapi_userinfo. A profile is
// kept under the OA identity it came with, not under the person, so merges
// of people never have to move it. Profiles are personal data: they are
// stored, never logged.
package profiles

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/attributevalue"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"wxbridge/shared/identity"
)

// Profile is what the user showed.
type Profile struct {
	Nickname   string    `dynamodbav:"nickname"`
	HeadImgURL string    `dynamodbav:"headimgurl,omitempty"`
	UpdatedAt  time.Time `dynamodbav:"updated_at"`
}

// String keeps the nickname out of anything printed.
func (p Profile) String() string { return "profiles.Profile{}" }

// ErrNotFound reports an identity with no stored profile.
var ErrNotFound = errors.New("profiles: not found")

// DB is the part of the DynamoDB API the store uses.
type DB interface {
	GetItem(context.Context, *dynamodb.GetItemInput, ...func(*dynamodb.Options)) (*dynamodb.GetItemOutput, error)
	PutItem(context.Context, *dynamodb.PutItemInput, ...func(*dynamodb.Options)) (*dynamodb.PutItemOutput, error)
}

// Store keeps profiles in the identity table, one item per OA identity.
type Store struct {
	db    DB
	table string
}

// NewStore returns a store over table.
func NewStore(db DB, table string) *Store { return &Store{db: db, table: table} }

type item struct {
	PK string `dynamodbav:"pk"`
	Profile
}

func pk(appid, openid string) string { return "PROFILE#" + identity.OAKey(appid, openid).String() }

// Put replaces the profile of the OA identity (appid, openid).
func (s *Store) Put(ctx context.Context, appid, openid string, p Profile) error {
	it, err := attributevalue.MarshalMap(item{PK: pk(appid, openid), Profile: p})
	if err != nil {
		return err
	}
	if _, err := s.db.PutItem(ctx, &dynamodb.PutItemInput{TableName: &s.table, Item: it}); err != nil {
		return fmt.Errorf("profiles: write: %w", err)
	}
	return nil
}

// Get returns the profile of the OA identity (appid, openid).
func (s *Store) Get(ctx context.Context, appid, openid string) (Profile, error) {
	key, err := attributevalue.MarshalMap(struct {
		PK string `dynamodbav:"pk"`
	}{pk(appid, openid)})
	if err != nil {
		return Profile{}, err
	}
	out, err := s.db.GetItem(ctx, &dynamodb.GetItemInput{TableName: &s.table, Key: key, ConsistentRead: aws.Bool(true)})
	if err != nil {
		return Profile{}, fmt.Errorf("profiles: read: %w", err)
	}
	if out.Item == nil {
		return Profile{}, ErrNotFound
	}
	var it item
	if err := attributevalue.UnmarshalMap(out.Item, &it); err != nil {
		return Profile{}, fmt.Errorf("profiles: read: %w", err)
	}
	return it.Profile, nil
}
