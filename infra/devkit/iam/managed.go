package iam

// samTemplate is a SAM policy template: its parameters and its policy
// document, with ${Parameter} for each parameter.
type samTemplate struct {
	params []string
	doc    string
}

// samTemplates are the SAM policy templates the check expands (the
// definitions in SAM's policy_templates.json) for the services wxbridge
// calls. Another one is an error naming this list.
var samTemplates = map[string]samTemplate{
	"DynamoDBCrudPolicy": {[]string{"TableName"}, `
Statement:
  - Effect: Allow
    Action: [dynamodb:GetItem, dynamodb:DeleteItem, dynamodb:PutItem, dynamodb:Scan, dynamodb:Query, dynamodb:UpdateItem,
      dynamodb:BatchWriteItem, dynamodb:BatchGetItem, dynamodb:DescribeTable, dynamodb:ConditionCheckItem]
    Resource:
      - !Sub arn:${AWS::Partition}:dynamodb:${AWS::Region}:${AWS::AccountId}:table/${TableName}
      - !Sub arn:${AWS::Partition}:dynamodb:${AWS::Region}:${AWS::AccountId}:table/${TableName}/index/*
`},
	"DynamoDBReadPolicy": {[]string{"TableName"}, `
Statement:
  - Effect: Allow
    Action: [dynamodb:GetItem, dynamodb:Scan, dynamodb:Query, dynamodb:BatchGetItem, dynamodb:DescribeTable]
    Resource:
      - !Sub arn:${AWS::Partition}:dynamodb:${AWS::Region}:${AWS::AccountId}:table/${TableName}
      - !Sub arn:${AWS::Partition}:dynamodb:${AWS::Region}:${AWS::AccountId}:table/${TableName}/index/*
`},
	"DynamoDBWritePolicy": {[]string{"TableName"}, `
Statement:
  - Effect: Allow
    Action: [dynamodb:PutItem, dynamodb:UpdateItem, dynamodb:BatchWriteItem]
    Resource:
      - !Sub arn:${AWS::Partition}:dynamodb:${AWS::Region}:${AWS::AccountId}:table/${TableName}
      - !Sub arn:${AWS::Partition}:dynamodb:${AWS::Region}:${AWS::AccountId}:table/${TableName}/index/*
`},
	"SQSSendMessagePolicy": {[]string{"QueueName"}, `
Statement:
  - Effect: Allow
    Action: sqs:SendMessage*
    Resource: !Sub arn:${AWS::Partition}:sqs:${AWS::Region}:${AWS::AccountId}:${QueueName}
`},
	"SQSPollerPolicy": {[]string{"QueueName"}, `
Statement:
  - Effect: Allow
    Action: [sqs:ChangeMessageVisibility, sqs:ChangeMessageVisibilityBatch, sqs:DeleteMessage, sqs:DeleteMessageBatch,
      sqs:GetQueueAttributes, sqs:ReceiveMessage]
    Resource: !Sub arn:${AWS::Partition}:sqs:${AWS::Region}:${AWS::AccountId}:${QueueName}
`},
	"LambdaInvokePolicy": {[]string{"FunctionName"}, `
Statement:
  - Effect: Allow
    Action: lambda:InvokeFunction
    Resource: !Sub arn:${AWS::Partition}:lambda:${AWS::Region}:${AWS::AccountId}:function:${FunctionName}*
`},
	"AWSSecretsManagerGetSecretValuePolicy": {[]string{"SecretArn"}, `
Statement:
  - Effect: Allow
    Action: secretsmanager:GetSecretValue
    Resource: !Sub ${SecretArn}
`},
	"EventBridgePutEventsPolicy": {[]string{"EventBusName"}, `
Statement:
  - Effect: Allow
    Action: events:PutEvents
    Resource: !Sub arn:${AWS::Partition}:events:${AWS::Region}:${AWS::AccountId}:event-bus/${EventBusName}
`},
}

// awsManaged are the AWS managed policies the check knows, by name. They
// grant nothing on the services the functions call; they are here so that
// a template naming them can be read.
var awsManaged = map[string]string{
	"AWSLambdaBasicExecutionRole": `
Statement:
  - Effect: Allow
    Action: [logs:CreateLogGroup, logs:CreateLogStream, logs:PutLogEvents]
    Resource: "*"
`,
	"AWSLambdaVPCAccessExecutionRole": `
Statement:
  - Effect: Allow
    Action: [logs:CreateLogGroup, logs:CreateLogStream, logs:PutLogEvents, ec2:CreateNetworkInterface,
      ec2:DescribeNetworkInterfaces, ec2:DescribeSubnets, ec2:DeleteNetworkInterface, ec2:AssignPrivateIpAddresses,
      ec2:UnassignPrivateIpAddresses]
    Resource: "*"
`,
	"AWSXRayDaemonWriteAccess": `
Statement:
  - Effect: Allow
    Action: [xray:PutTraceSegments, xray:PutTelemetryRecords, xray:GetSamplingRules, xray:GetSamplingTargets,
      xray:GetSamplingStatisticSummaries]
    Resource: "*"
`,
}
