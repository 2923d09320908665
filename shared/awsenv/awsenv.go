// Package awsenv builds the AWS clients every function uses and reads its
// configuration: environment variables and JSON secrets. Local runs point
// the SDK at moto with AWS_ENDPOINT_URL, which the SDK honours by itself.
package awsenv

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
)

// Load returns the AWS configuration from the environment (the Lambda role
// in AWS; AWS_ENDPOINT_URL and static credentials locally).
func Load(ctx context.Context) (aws.Config, error) {
	return config.LoadDefaultConfig(ctx)
}

// SecretGetter is the one Secrets Manager call secret loading needs.
type SecretGetter interface {
	GetSecretValue(ctx context.Context, in *secretsmanager.GetSecretValueInput, opts ...func(*secretsmanager.Options)) (*secretsmanager.GetSecretValueOutput, error)
}

// ErrSecretFormat reports a secret whose value is not the JSON expected.
var ErrSecretFormat = errors.New("awsenv: secret is not valid JSON for its purpose")

// SecretJSON reads secret id and decodes its JSON string value into v. The
// value itself never appears in an error.
func SecretJSON(ctx context.Context, sm SecretGetter, id string, v any) error {
	out, err := sm.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String(id)})
	if err != nil {
		return fmt.Errorf("awsenv: read secret %s: %w", id, err)
	}
	if out.SecretString == nil {
		return fmt.Errorf("%w: %s has no string value", ErrSecretFormat, id)
	}
	if err := json.Unmarshal([]byte(*out.SecretString), v); err != nil {
		var se *json.SyntaxError
		var te *json.UnmarshalTypeError
		switch {
		case errors.As(err, &se):
			return fmt.Errorf("%w: %s: syntax error at offset %d", ErrSecretFormat, id, se.Offset)
		case errors.As(err, &te):
			return fmt.Errorf("%w: %s: field %s has the wrong type", ErrSecretFormat, id, te.Field)
		}
		return fmt.Errorf("%w: %s", ErrSecretFormat, id)
	}
	return nil
}
