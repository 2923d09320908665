package lambdatest

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"wxbridge/infra/devkit/cfn"
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
				t.Errorf("%s: queries %s, which no code emits (emitted: %v)", id, key, have)
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

// emittedMetrics finds every Metrics.Count and Metrics.Value call in the
// repository's non-test code (and the wechat client's WeChatErrors) and
// returns "Name dim,dim" keys: the dimension set is "function" plus the
// keys the call passes, sorted.
func emittedMetrics(t *testing.T) map[string]bool {
	t.Helper()
	wd, _ := os.Getwd()
	p, err := cfn.Find(wd)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	fset := token.NewFileSet()
	for _, dir := range []string{"functions", "shared"} {
		err := filepath.WalkDir(filepath.Join(filepath.Dir(p), dir), func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
				return err
			}
			f, err := parser.ParseFile(fset, path, nil, 0)
			if err != nil {
				return err
			}
			ast.Inspect(f, func(n ast.Node) bool {
				call, ok := n.(*ast.CallExpr)
				if !ok {
					return true
				}
				sel, ok := call.Fun.(*ast.SelectorExpr)
				if !ok || (sel.Sel.Name != "Count" && sel.Sel.Name != "Value") || len(call.Args) == 0 {
					return true
				}
				name, ok := literal(call.Args[0])
				if !ok {
					return true
				}
				first := 1 // Count(name, k, v, ...)
				if sel.Sel.Name == "Value" {
					first = 3 // Value(name, unit, v, k, v, ...)
				}
				dims := []string{"function"}
				for i := first; i+1 < len(call.Args); i += 2 {
					k, ok := literal(call.Args[i])
					if !ok {
						return true
					}
					dims = append(dims, k)
				}
				out[name+" "+strings.Join(sorted(dims), ",")] = true
				return true
			})
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if len(out) < 20 || !out["TokenConfigAlarm appid,errcode,function"] {
		t.Fatalf("found only %v: the metric calls have changed shape", slices.Sorted(maps.Keys(out)))
	}
	return out
}

func literal(e ast.Expr) (string, bool) {
	bl, ok := e.(*ast.BasicLit)
	if !ok || bl.Kind != token.STRING {
		return "", false
	}
	s, err := strconv.Unquote(bl.Value)
	return s, err == nil
}
