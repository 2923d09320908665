package main

import (
	"context"

	"wxbridge/shared/config"
	"wxbridge/shared/tokens"
	"wxbridge/shared/wechat/push"
)

// DevApp is one configured app as /_dev/config lists it: never its secret.
type DevApp struct {
	Kind    config.Kind `json:"kind"` // mini_program, official_account, website or mobile
	AppID   string      `json:"appid"`
	Default bool        `json:"default,omitempty"` // the default of its kind: the routes without an appid serve it
	// Unbound is an app the sandbox binds to no open platform account: the
	// platform reveals no unionid to it, so it links to a person only
	// through open data or a binding.
	Unbound bool `json:"unbound,omitempty"`
	// An official account's push settings, as its console has them, and
	// the mode the sandbox pushes in.
	Token          string    `json:"token,omitempty"`
	EncodingAESKey string    `json:"encoding_aes_key,omitempty"`
	PushURL        string    `json:"push_url,omitempty"`
	PushMode       push.Mode `json:"mode,omitempty"`
}

// devApps lists every configured app, kind by kind, each kind's default
// first.
func (s *Stack) devApps() []DevApp {
	unbound := map[string]bool{}
	if s.sb != nil {
		for _, a := range s.sb.Apps() {
			unbound[a.AppID] = !a.Bound
		}
	}
	out := []DevApp{}
	for i, ref := range s.apps.AllApps() {
		a := DevApp{Kind: ref.Kind, AppID: ref.AppID, Unbound: unbound[ref.AppID]}
		a.Default = i == 0 || out[i-1].Kind != ref.Kind
		if oa, ok := s.apps.OA(ref.AppID); ok && ref.Kind == config.KindOfficialAccount {
			a.Token, a.EncodingAESKey, a.PushURL, a.PushMode = oa.Token, oa.EncodingAESKey, s.pushURL(oa.AppID), s.pushModes[oa.AppID]
		}
		out = append(out, a)
	}
	return out
}

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
	c.PushURL = s.pushURL(s.apps.OfficialAccount.AppID)
	c.TokenSecretPrefix = s.tokenSecret(tokens.EnvSecretPrefix)
	c.Resources = map[string]DevResource{}
	for id, ref := range s.res.refs {
		if r, ok := s.tpl.Resources[id]; ok {
			c.Resources[id] = DevResource{Type: r.Type, ID: ref}
		}
	}
}
