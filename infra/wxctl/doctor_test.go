package main

import (
	"context"
	"encoding/json"
	"fmt"
	"html"
	"io"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/cloudwatch"
	cwtypes "github.com/aws/aws-sdk-go-v2/service/cloudwatch/types"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"wxbridge/shared/tokens"
)

// checklist splits doctor's output into its ✓ and ✗ lines (a ✗ line with
// its fix).
func checklist(out string) (passed, failed []string) {
	lines := strings.Split(out, "\n")
	for i, l := range lines {
		switch {
		case strings.HasPrefix(l, "✓ "):
			passed = append(passed, l)
		case strings.HasPrefix(l, "✗ "):
			if i+1 < len(lines) && strings.HasPrefix(lines[i+1], "    fix: ") {
				l += "\n" + lines[i+1]
			}
			failed = append(failed, l)
		}
	}
	return passed, failed
}

// cloudFormation answers DescribeStacks and ListStackResources (2 resources
// a page) for its stacks, in CloudFormation's query protocol. It stands in
// for moto's CloudFormation, whose first CreateStack takes 5 s (it loads
// every service's models) and which lists a secret without its logical ID.
type cloudFormation map[string]struct {
	resources map[string]resource
	outputs   map[string]string
}

func (cf cloudFormation) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	r.ParseForm()
	action, name := r.Form.Get("Action"), r.Form.Get("StackName")
	st, ok := cf[name]
	var b strings.Builder
	w.Header().Set("Content-Type", "text/xml")
	if !ok {
		w.WriteHeader(http.StatusBadRequest)
		fmt.Fprintf(&b, "<ErrorResponse><Error><Type>Sender</Type><Code>ValidationError</Code><Message>Stack with id %s does not exist</Message></Error><RequestId>1</RequestId></ErrorResponse>", html.EscapeString(name))
		io.WriteString(w, b.String())
		return
	}
	const ns = ` xmlns="http://cloudformation.amazonaws.com/doc/2010-05-15/"`
	switch action {
	case "DescribeStacks":
		fmt.Fprintf(&b, "<DescribeStacksResponse%s><DescribeStacksResult><Stacks><member><StackName>%s</StackName><StackStatus>CREATE_COMPLETE</StackStatus><Outputs>", ns, name)
		for k, v := range st.outputs {
			fmt.Fprintf(&b, "<member><OutputKey>%s</OutputKey><OutputValue>%s</OutputValue></member>", k, html.EscapeString(v))
		}
		b.WriteString("</Outputs></member></Stacks></DescribeStacksResult></DescribeStacksResponse>")
	case "ListStackResources":
		ids := slices.Sorted(maps.Keys(st.resources))
		from, _ := strconv.Atoi(r.Form.Get("NextToken"))
		to := min(from+2, len(ids))
		fmt.Fprintf(&b, "<ListStackResourcesResponse%s><ListStackResourcesResult><StackResourceSummaries>", ns)
		for _, id := range ids[from:to] {
			fmt.Fprintf(&b, "<member><LogicalResourceId>%s</LogicalResourceId><PhysicalResourceId>%s</PhysicalResourceId><ResourceType>%s</ResourceType><ResourceStatus>CREATE_COMPLETE</ResourceStatus></member>",
				id, html.EscapeString(st.resources[id].ID), st.resources[id].Type)
		}
		b.WriteString("</StackResourceSummaries>")
		if to < len(ids) {
			fmt.Fprintf(&b, "<NextToken>%d</NextToken>", to)
		}
		b.WriteString("</ListStackResourcesResult></ListStackResourcesResponse>")
	default:
		http.Error(w, "not supported: "+action, http.StatusBadRequest)
		return
	}
	io.WriteString(w, b.String())
}

func TestFailureFix(t *testing.T) {
	s := stack{resources: map[string]resource{refresherID: {ID: "fn"}}, dev: &devstack{URL: "http://127.0.0.1:8080"}}
	a := app{kind: "official account", whitelist: "OA-PAGE"}
	for _, tc := range []struct {
		f    tokens.Failure
		want []string
	}{
		{tokens.Failure{ErrCode: 40164, ErrMsg: "invalid ip 198.51.100.7 ipv6 ::ffff:198.51.100.7, not in whitelist", Class: "config"},
			[]string{"WeChat refuses token calls from 198.51.100.7", "OA-PAGE", "RefresherSubnetIds", "aws lambda invoke --endpoint-url http://127.0.0.1:8080 --function-name fn"}},
		{tokens.Failure{ErrCode: 89503, ErrMsg: "risk ip 198.51.100.7 waiting for confirmation", Class: "config"}, []string{"198.51.100.7 until an administrator confirms"}},
		{tokens.Failure{ErrCode: 40125, ErrMsg: "invalid appsecret", Class: "config"}, []string{"AppSecret of the official account in the configuration secret is wrong"}},
		{tokens.Failure{ErrCode: -1, ErrMsg: "system error", Class: "transient"}, []string{"retries every 5 minutes"}},
		{tokens.Failure{ErrMsg: "read tcp: connection reset", Class: "infra"}, []string{"retries every 5 minutes"}},
		{tokens.Failure{ErrCode: 61024, Class: "config"}, []string{"third-party platform"}},
		{tokens.Failure{ErrCode: 12345, Class: "unknown"}, []string{"docs/operations.md", "errcode 12345"}},
	} {
		fix := failureFix(&tc.f, a, s)
		for _, w := range tc.want {
			if !strings.Contains(fix, w) {
				t.Errorf("failureFix(%d) = %q, want %q in it", tc.f.ErrCode, fix, w)
			}
		}
	}
}

func secretString(t *testing.T, sm *secretsmanager.Client, id string) string {
	t.Helper()
	out, err := sm.GetSecretValue(context.Background(), &secretsmanager.GetSecretValueInput{SecretId: aws.String(id)})
	if err != nil {
		t.Fatal(err)
	}
	return aws.ToString(out.SecretString)
}

func putSecret(t *testing.T, sm *secretsmanager.Client, id, v string) {
	t.Helper()
	if _, err := sm.PutSecretValue(context.Background(), &secretsmanager.PutSecretValueInput{SecretId: aws.String(id), SecretString: aws.String(v)}); err != nil {
		t.Fatal(err)
	}
}

func setAlarm(t *testing.T, cw *cloudwatch.Client, name string, state cwtypes.StateValue) {
	t.Helper()
	_, err := cw.SetAlarmState(context.Background(), &cloudwatch.SetAlarmStateInput{AlarmName: aws.String(name), StateValue: state,
		StateReason: aws.String("Threshold Crossed: 1 datapoint [1.0] was greater than the threshold (0.0).")})
	if err != nil {
		t.Fatal(err)
	}
}

func post(t *testing.T, url, body string) {
	t.Helper()
	resp, err := http.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode >= 300 {
		t.Fatalf("POST %s: HTTP %d", url, resp.StatusCode)
	}
}

func getJSON(t *testing.T, url string, v any) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatal(err)
	}
}
