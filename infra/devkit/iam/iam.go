// Package iam holds each function's AWS calls to its own IAM policy in
// template.yaml, locally, so that a missing permission fails a test or
// `make dev` instead of a first deploy.
//
// A Proxy sits between the functions' AWS clients and moto (or an awsfault
// proxy in front of moto). Each function signs its calls with credentials
// whose access key id names it (AccessKeyID, Proxy.Config), so one proxy
// serves every function: it reads the caller from the SigV4 Credential of
// each request, maps the request to the IAM authorizations AWS makes for
// it (action, resource ARN, condition keys such as dynamodb:LeadingKeys;
// one per item for batches and transactions), and evaluates them in Go
// against the policies the template gives that function's role: inline
// statements, SAM policy templates, the template's managed policies and
// the resource policies of its secrets and queues, with !Ref, !GetAtt,
// !Sub, !If and the partition resolved to the environment's resources. A
// denied call is answered AccessDeniedException in the service's protocol,
// which the SDK does not retry, as in AWS.
//
// What is evaluated is the role's identity policies only: SAM's implicit
// execution-role policies for event sources (the SQS and DynamoDB stream
// pollers' ReceiveMessage, DeleteMessage, GetRecords, …) serve Lambda's
// pollers, not function code, so a function that called them itself would
// be denied here though AWS would let it.
//
// The evaluation is AWS's for one account: an explicit Deny wins, then any
// Allow; conditions with the String, Arn, Bool, Null and Numeric operators,
// IfExists, and the ForAllValues and ForAnyValue set operators (over an
// absent key ForAllValues holds: a Scan passes a LeadingKeys condition, as
// in AWS). An operator, condition key, managed policy or intrinsic the
// check does not know is an error that denies, never an allow.
package iam
