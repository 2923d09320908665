package main

import "context"

// DevResource is one of the template's resources as the devstack made it.
type DevResource struct {
	Type string `json:"type"` // as in template.yaml: AWS::SQS::Queue
	ID   string `json:"id"`   // what !Ref gives: a queue URL, a secret ARN, an alarm or function name
}

// describeResources adds to c what a tool needs to treat the devstack as a
// deployed stack (wxctl --dev): moto's credentials and every resource by
// its logical ID, as CloudFormation lists a stack's resources.
func (s *Stack) describeResources(c *DevConfig) {
	creds, _ := s.aws.Credentials.Retrieve(context.Background()) // static
	c.AccessKeyID, c.SecretAccessKey = creds.AccessKeyID, creds.SecretAccessKey
	c.PushURL = s.APIURL + "/wechat/push"
	c.Resources = map[string]DevResource{}
	for id, ref := range s.res.refs {
		if r, ok := s.tpl.Resources[id]; ok {
			c.Resources[id] = DevResource{Type: r.Type, ID: ref}
		}
	}
}
