package handler_test

import (
	"context"
	"errors"
	"maps"
	"strings"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	smtypes "github.com/aws/aws-sdk-go-v2/service/secretsmanager/types"
	"github.com/aws/smithy-go"

	"wxbridge/functions/token-refresher/handler"
	"wxbridge/infra/devkit/awstest"
	"wxbridge/infra/devkit/sandbox"
	"wxbridge/infra/devkit/testenv"
	"wxbridge/shared/config"
	"wxbridge/shared/tokens"
)

var (
	mp2 = sandbox.DevMiniProgram2
	oa2 = sandbox.DevOfficialAccount2
)

func TestApps(t *testing.T) {
	app := func(a sandbox.App) config.App { return config.App{AppID: a.AppID, Secret: a.Secret} }
	old := config.Config{MiniProgram: app(mp), OfficialAccount: config.OfficialAccount{App: app(oa)}}
	multi := old
	multi.MiniPrograms = []config.App{app(mp2), {AppID: "wxnosecret"}}
	multi.OfficialAccounts = []config.OfficialAccount{{App: app(oa2)}}
	multi.WebsiteApps = []config.App{app(sandbox.DevWebsite)}
	multi.MobileApps = []config.App{app(sandbox.DevMobile)}
	for _, c := range []struct {
		name   string
		cfg    config.Config
		prefix string
		want   map[string]string // appid -> token secret
	}{
		{"the_old_configuration_keeps_its_two_secrets", old, "stack/token/", map[string]string{mp.AppID: "arn:mp", oa.AppID: "arn:oa"}},
		{"every_mini_program_and_official_account_with_credentials", multi, "stack/token/",
			map[string]string{mp.AppID: "arn:mp", oa.AppID: "arn:oa", mp2.AppID: "stack/token/" + mp2.AppID, oa2.AppID: "stack/token/" + oa2.AppID}},
		{"without_a_prefix_only_the_defaults", multi, "", map[string]string{mp.AppID: "arn:mp", oa.AppID: "arn:oa"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := map[string]string{}
			for _, a := range handler.Apps(c.cfg, "arn:mp", "arn:oa", c.prefix) {
				got[a.AppID] = a.TokenSecret
			}
			if !maps.Equal(got, c.want) {
				t.Fatalf("apps %v, want %v", got, c.want)
			}
		})
	}
}

// appsTestenv has a second mini program and official account, and a
// website and a mobile app (which take no token), configured beside the
// defaults. The second apps' token secrets do not exist yet.
func appsTestenv(t *testing.T) *testenv.Env {
	t.Helper()
	return testenv.New(t, testenv.Tokens(),
		testenv.Sandbox(func(c *sandbox.Config) {
			c.Apps = []sandbox.AppSpec{
				{Kind: sandbox.AppMiniProgram, App: mp2}, {Kind: sandbox.AppOfficialAccount, App: oa2},
				{Kind: sandbox.AppWebsite, App: sandbox.DevWebsite}, {Kind: sandbox.AppMobile, App: sandbox.DevMobile},
			}
		}),
		testenv.Configure(func(c *config.Config) {
			c.MiniPrograms = []config.App{{AppID: mp2.AppID, Secret: mp2.Secret}}
			c.OfficialAccounts = []config.OfficialAccount{{App: config.App{AppID: oa2.AppID, Secret: oa2.Secret}}}
			c.WebsiteApps = []config.App{{AppID: sandbox.DevWebsite.AppID, Secret: sandbox.DevWebsite.Secret}}
			c.MobileApps = []config.App{{AppID: sandbox.DevMobile.AppID, Secret: sandbox.DevMobile.Secret}}
		}))
}

// appsEnv is env over appsTestenv.
func appsEnv(t *testing.T) *env {
	t.Helper()
	te := appsTestenv(t)
	e := &env{t: t, te: te, sb: te.Sandbox, url: te.URL, table: te.Table, db: te.DB, sm: te.Secrets, secrets: te.TokenSecrets, logs: te.Logs}
	e.apps = handler.Apps(te.Config, te.TokenSecrets[mp.AppID], te.TokenSecrets[oa.AppID], te.TokenSecretPrefix)
	e.h = e.handler()
	e.invoker = &tokens.Local{Run: func(ctx context.Context, req tokens.RefreshRequest) error {
		_, err := e.h.Handle(ctx, req)
		return err
	}}
	t.Cleanup(e.invoker.Wait)
	return e
}

// exists reports whether the token secret id has been made.
func (e *env) exists(id string) bool {
	e.t.Helper()
	_, err := e.sm.DescribeSecret(context.Background(), &secretsmanager.DescribeSecretInput{SecretId: aws.String(id)})
	var nf *smtypes.ResourceNotFoundException
	if err != nil && !errors.As(err, &nf) {
		e.t.Fatal(err)
	}
	return err == nil
}

// raceCreate lets another run make the secret between this run's
// PutSecretValue (not found) and its CreateSecret, a window of a
// millisecond that real concurrency hits only by chance; moto does the
// calls.
type raceCreate struct {
	handler.Secrets
	once   sync.Once
	before func()
}

func (r *raceCreate) CreateSecret(ctx context.Context, in *secretsmanager.CreateSecretInput, opts ...func(*secretsmanager.Options)) (*secretsmanager.CreateSecretOutput, error) {
	r.once.Do(r.before)
	return r.Secrets.CreateSecret(ctx, in, opts...)
}

// Every mini program and official account has its own token, in its own
// secret, kept by the one refresher: the defaults in the stack's secrets,
// the others in secrets the refresher makes on their first refresh.
func TestEveryApp(t *testing.T) {
	t.Parallel()
	e := appsEnv(t)
	ctx := context.Background()
	prefix := e.te.TokenSecretPrefix

	t.Run("concurrent_first_refreshes_make_the_secret_once", func(t *testing.T) {
		const instances = 6
		outcomes := map[string]int{}
		var mu sync.Mutex
		var wg sync.WaitGroup
		start := make(chan struct{})
		for range instances {
			h := e.handler()
			wg.Go(func() {
				<-start
				res, err := h.Handle(ctx, tokens.RefreshRequest{AppID: mp2.AppID})
				if err != nil {
					t.Errorf("run: %v", err)
				}
				mu.Lock()
				outcomes[outcomeOf(res, mp2.AppID)]++
				mu.Unlock()
			})
		}
		close(start)
		wg.Wait()
		if c := e.sb.TokenCalls(mp2.AppID); c.Stable != 1 || outcomes[handler.OutcomeRefreshed] != 1 {
			t.Fatalf("stable_token calls %d, outcomes %v: want one call, one refreshed and the rest busy or fresh", c.Stable, outcomes)
		}
		if got := e.secrets[mp2.AppID]; got != prefix+mp2.AppID || !e.stored(mp2.AppID).Usable(e.sb.Clock().Now()) {
			t.Fatalf("%s: no usable token in %s", mp2.AppID, got)
		}
		if n := len(logLines(e.logs, `"secret_created"`, mp2.AppID)); n != 1 {
			t.Fatalf("%d secret_created lines, want 1", n)
		}
	})

	t.Run("a_reader_of_a_secret_not_made_yet_asks_the_refresher", func(t *testing.T) {
		// follow-event reads the second OA's token; nobody has made its
		// secret yet. The refresher's write races another run's (one whose
		// lease ran out: its own table here) to make it.
		// The other run's lease is in a table of its own, beside the
		// template's (which the IAM check knows), so the test's client.
		other := e.handler(func(o *handler.Options) { o.DB, o.Table = e.db, awstest.Table(t) })
		raced := false
		e.h = e.handler(func(o *handler.Options) {
			o.Secrets = &raceCreate{Secrets: o.Secrets, before: func() {
				raced = true
				if res, err := other.Handle(ctx, tokens.RefreshRequest{AppID: oa2.AppID}); err != nil {
					t.Errorf("the other run: %+v, %v", res, err)
				}
			}}
		})
		if e.exists(e.secrets[oa2.AppID]) {
			t.Fatal("the secret exists before the first refresh")
		}
		src := e.source(func(o *tokens.Options) { o.Reader = e.te.As("FollowEventFunction").Secrets })
		if _, err := e.client(src).CallbackIPs(ctx, oa2.AppID); err != nil {
			t.Fatalf("first call: %v", err)
		}
		e.invoker.Wait()
		if !raced {
			t.Fatal("the refresher did not try to make the secret")
		}
		if reqs := e.invoker.Requests(); len(reqs) != 1 || reqs[0] != (tokens.RefreshRequest{AppID: oa2.AppID}) {
			t.Fatalf("refresh requests %+v, want one plain run of %s", reqs, oa2.AppID)
		}
		if !e.exists(e.secrets[oa2.AppID]) {
			t.Fatal("no secret made")
		}
		if n := len(logLines(e.logs, `"outcome":"error"`)); n != 0 {
			t.Fatalf("a run ended in error (the secret already existed):\n%s", e.logs)
		}
		for _, a := range []sandbox.App{mp, oa} {
			if c := e.sb.TokenCalls(a.AppID); c.Total() != 0 {
				t.Fatalf("%s: token calls %+v: only the app asked for is refreshed", a.AppID, c)
			}
		}
	})

	var stored map[string]tokens.Stored
	t.Run("the_schedule_refreshes_every_app_into_its_own_secret", func(t *testing.T) {
		// Built as in Lambda: the template's environment and policy.
		h, err := handler.FromEnv(ctx, e.te.FunctionEnv("TokenRefresherFunction"))
		if err != nil {
			t.Fatal(err)
		}
		res, err := h.Handle(ctx, tokens.RefreshRequest{})
		if err != nil {
			t.Fatal(err)
		}
		want := map[string]string{mp.AppID: handler.OutcomeRefreshed, oa.AppID: handler.OutcomeRefreshed, mp2.AppID: handler.OutcomeFresh, oa2.AppID: handler.OutcomeFresh}
		got := map[string]string{}
		for _, a := range res.Apps {
			got[a.AppID] = a.Outcome
		}
		if !maps.Equal(got, want) {
			t.Fatalf("outcomes %v, want %v (website and mobile apps take no token)", got, want)
		}
		for _, a := range []sandbox.App{sandbox.DevWebsite, sandbox.DevMobile} {
			if c := e.sb.TokenCalls(a.AppID); c.Total() != 0 {
				t.Fatalf("%s: token calls %+v", a.AppID, c)
			}
		}
		// The defaults keep the stack's secrets; the others are named by
		// the prefix; four tokens, each its own app's.
		stored = map[string]tokens.Stored{}
		for appid, id := range e.secrets {
			if wantARN := appid == mp.AppID || appid == oa.AppID; wantARN != strings.HasPrefix(id, "arn:") || !wantARN && id != prefix+appid {
				t.Fatalf("%s: token secret %s", appid, id)
			}
			stored[appid] = e.stored(appid)
		}
		fresh := map[string]bool{}
		wc := e.client(e.te.As("SendWorkerFunction").Tokens)
		for appid, st := range stored {
			fresh[st.AccessToken] = true
			if _, err := wc.CallbackIPs(ctx, appid); err != nil {
				t.Fatalf("%s: %v", appid, err)
			}
		}
		if len(fresh) != 4 {
			t.Fatalf("%d distinct tokens in 4 secrets", len(fresh))
		}
	})

	t.Run("a_token_error_in_one_app_does_not_stop_the_others", func(t *testing.T) {
		e.sb.SetTokenError(mp2.AppID, 40164)
		e.sb.SetTokenError(oa.AppID, 40125)
		e.advanceTo(oa2.AppID, 0) // every token expired or expiring
		res, err := e.h.Handle(ctx, tokens.RefreshRequest{})
		if err == nil || !strings.Contains(err.Error(), mp2.AppID) || !strings.Contains(err.Error(), oa.AppID) {
			t.Fatalf("err %v, want the two failed apps named", err)
		}
		for appid, want := range map[string]string{mp.AppID: handler.OutcomeRefreshed, oa.AppID: handler.OutcomeFailed, mp2.AppID: handler.OutcomeFailed, oa2.AppID: handler.OutcomeRefreshed} {
			if got := outcomeOf(res, appid); got != want {
				t.Fatalf("%s: outcome %q, want %q", appid, got, want)
			}
		}
		for appid, code := range map[string]int{mp2.AppID: 40164, oa.AppID: 40125} {
			if f := e.stored(appid).Failure; f == nil || f.ErrCode != code {
				t.Fatalf("%s: failure %+v, want %d recorded in its own secret", appid, f, code)
			}
		}
		for _, appid := range []string{mp.AppID, oa2.AppID} {
			if st := e.stored(appid); st.Failure != nil || st.AccessToken == stored[appid].AccessToken {
				t.Fatalf("%s: not refreshed (failure %+v)", appid, st.Failure)
			}
		}
		var seen []string
		for _, st := range stored {
			seen = append(seen, st.AccessToken)
		}
		e.noTokensIn(append(seen, e.stored(mp.AppID).AccessToken, e.stored(oa2.AppID).AccessToken)...)
		for _, a := range []sandbox.App{mp2, oa2} {
			if strings.Contains(e.logs.String(), a.Secret) {
				t.Fatal("an AppSecret appears in the logs")
			}
		}
	})
}

// Only the refresher makes and writes the token secrets under the prefix;
// every function that reads tokens reads them. (Its own environment: a
// function whose clients come from As may not be denied anything.)
func TestOnlyTheRefresherWritesAppSecrets(t *testing.T) {
	t.Parallel()
	te := appsTestenv(t)
	ctx := context.Background()
	h, err := handler.FromEnv(ctx, te.FunctionEnv("TokenRefresherFunction"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.Handle(ctx, tokens.RefreshRequest{AppID: mp2.AppID}); err != nil {
		t.Fatal(err)
	}
	id := te.TokenSecrets[mp2.AppID]
	denied := func(err error) bool {
		var ae smithy.APIError
		return errors.As(err, &ae) && ae.ErrorCode() == "AccessDeniedException"
	}
	client := func(fn string) *secretsmanager.Client {
		return secretsmanager.NewFromConfig(te.FunctionAWS(fn), func(o *secretsmanager.Options) { o.Retryer = aws.NopRetryer{} })
	}
	for _, fn := range []string{"LoginFunction", "FollowEventFunction", "FollowerSyncFunction", "SendWorkerFunction"} {
		sm := client(fn)
		if st, err := tokens.Load(ctx, sm, id); err != nil || st.AccessToken == "" {
			t.Errorf("%s cannot read %s: %v", fn, id, err)
		}
		if _, err := sm.PutSecretValue(ctx, &secretsmanager.PutSecretValueInput{SecretId: aws.String(id), SecretString: aws.String(`{"access_token":"forged"}`)}); !denied(err) {
			t.Errorf("%s PutSecretValue: %v, want AccessDeniedException", fn, err)
		}
		forged := te.TokenSecretPrefix + oa2.AppID // not made yet
		if _, err := sm.CreateSecret(ctx, &secretsmanager.CreateSecretInput{Name: aws.String(forged), SecretString: aws.String(`{"access_token":"forged"}`)}); !denied(err) {
			t.Errorf("%s CreateSecret: %v, want AccessDeniedException", fn, err)
		}
	}
	if _, err := client("TokenRefresherFunction").CreateSecret(ctx, &secretsmanager.CreateSecretInput{Name: aws.String(awstest.Name(t, "wxb")), SecretString: aws.String("{}")}); !denied(err) {
		t.Errorf("the refresher's CreateSecret outside the prefix: %v, want AccessDeniedException", err)
	}
	var st tokens.Stored
	if st, err = tokens.Load(ctx, te.Secrets, id); err != nil || st.AccessToken == "" || st.AccessToken == "forged" {
		t.Fatalf("%s: %v, %v", id, st, err)
	}
}
