package lambdatest

import (
	"maps"
	"regexp"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"wxbridge/infra/devkit/cfn"
	"wxbridge/shared/observe"
)

// alarm is what the checks below read of an AWS::CloudWatch::Alarm.
type alarm struct {
	Namespace  string `yaml:"Namespace"`
	MetricName string `yaml:"MetricName"`
	Dimensions []struct {
		Name  string    `yaml:"Name"`
		Value yaml.Node `yaml:"Value"`
	} `yaml:"Dimensions"`
	Metrics []struct {
		Expression string `yaml:"Expression"`
	} `yaml:"Metrics"`
	AlarmActions yaml.Node `yaml:"AlarmActions"`
	OKActions    yaml.Node `yaml:"OKActions"`
}

var insightsQuery = regexp.MustCompile(`^SELECT [A-Z]+\((\w+)\) FROM SCHEMA\("wxbridge"((?:, "\w+")*)\)`)

// TestAlarmsWatchWhatTheCodeEmits holds template.yaml's alarms to the
// stack: every function has an Errors and a Throttles alarm, every
// dead-letter queue a depth alarm, every alarm notifies AlarmTopicArn, and
// every alarm on an EMF metric queries a metric the code writes with
// exactly the dimension set it writes (an alarm on a dimension set nobody
// emits watches nothing and never fires).
func TestAlarmsWatchWhatTheCodeEmits(t *testing.T) {
	tpl, err := cfn.LoadNearest()
	if err != nil {
		t.Fatal(err)
	}
	emitted := emittedMetrics(t)
	watched := map[string]bool{} // "Errors LoginFunction", "queue SendDLQ"
	for _, id := range tpl.ResourcesOf("AWS::CloudWatch::Alarm") {
		var a alarm
		props := tpl.Resources[id].Properties
		if err := props.Decode(&a); err != nil {
			t.Fatalf("%s: %v", id, err)
		}
		for _, actions := range []yaml.Node{a.AlarmActions, a.OKActions} {
			if actions.Tag != "!If" || len(actions.Content) != 3 || actions.Content[0].Value != "HasAlarmTopic" {
				t.Errorf("%s: AlarmActions and OKActions must be !If [HasAlarmTopic, [!Ref AlarmTopicArn], !Ref AWS::NoValue]", id)
			}
		}
		switch {
		case a.Namespace == "AWS/Lambda" && len(a.Dimensions) == 1 && a.Dimensions[0].Value.Tag == "!Ref":
			watched[a.MetricName+" "+a.Dimensions[0].Value.Value] = true
		case a.Namespace == "AWS/SQS" && len(a.Dimensions) == 1 && a.Dimensions[0].Value.Tag == "!GetAtt":
			watched["queue "+strings.TrimSuffix(a.Dimensions[0].Value.Value, ".QueueName")] = true
		case len(a.Metrics) == 1:
			m := insightsQuery.FindStringSubmatch(strings.TrimSpace(a.Metrics[0].Expression))
			if m == nil {
				t.Errorf("%s: %q is not a Metrics Insights query on namespace wxbridge", id, a.Metrics[0].Expression)
				continue
			}
			var dims []string
			for _, d := range strings.Split(m[2], ",") {
				if d = strings.Trim(strings.TrimSpace(d), `"`); d != "" {
					dims = append(dims, d)
				}
			}
			key := m[1] + " " + strings.Join(sorted(dims), ",")
			if !emitted[key] {
				var have []string
				for k := range emitted {
					if strings.HasPrefix(k, m[1]+" ") {
						have = append(have, k)
					}
				}
				t.Errorf("%s: queries %s, which no code emits (shared/observe's catalogue has: %v)", id, key, have)
			}
		default:
			t.Errorf("%s: an alarm of a shape this test does not know", id)
		}
	}
	for _, fn := range tpl.ResourcesOf("AWS::Serverless::Function") {
		for _, metric := range []string{"Errors", "Throttles"} {
			if !watched[metric+" "+fn] {
				t.Errorf("no %s alarm for %s", metric, fn)
			}
		}
	}
	for _, q := range tpl.ResourcesOf("AWS::SQS::Queue") {
		def, err := tpl.Queue(q)
		if err != nil {
			t.Fatal(err)
		}
		if def.DeadLetter != "" && !watched["queue "+def.DeadLetter] {
			t.Errorf("no depth alarm for %s, the dead-letter queue of %s", def.DeadLetter, q)
		}
	}
}

// emittedMetrics returns "Name dim,dim" keys for every metric and
// dimension set in shared/observe's catalogue: the dimension set is
// "function" plus the catalogued ones, sorted. The catalogue is the code's
// (shared/observe's TestCatalogueHoldsEveryMetricTheCodeWrites holds every
// Count and Value call to it).
func emittedMetrics(t *testing.T) map[string]bool {
	t.Helper()
	out := map[string]bool{}
	for _, m := range observe.Catalogue {
		sets := m.Dimensions
		if len(sets) == 0 {
			sets = [][]string{nil}
		}
		for _, set := range sets {
			out[m.Name+" "+strings.Join(sorted(append([]string{"function"}, set...)), ",")] = true
		}
	}
	if !out["TokenConfigAlarm appid,errcode,function"] {
		t.Fatalf("the catalogue has no TokenConfigAlarm by appid and errcode: %v", slices.Sorted(maps.Keys(out)))
	}
	return out
}
