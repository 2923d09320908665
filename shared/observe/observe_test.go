package observe

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"
)

func TestCountWritesEMF(t *testing.T) {
	var buf bytes.Buffer
	m := NewMetrics(&buf, "login")
	m.now = func() time.Time { return time.UnixMilli(1795000000123) }
	m.Count("Logins", "outcome", "created")
	var rec struct {
		AWS struct {
			Timestamp         int64
			CloudWatchMetrics []struct {
				Namespace  string
				Dimensions [][]string
				Metrics    []struct{ Name, Unit string }
			}
		} `json:"_aws"`
		Function string `json:"function"`
		Outcome  string `json:"outcome"`
		Logins   int    `json:"Logins"`
	}
	if err := json.Unmarshal(buf.Bytes(), &rec); err != nil {
		t.Fatalf("not JSON: %v: %s", err, buf.String())
	}
	cw := rec.AWS.CloudWatchMetrics
	if rec.AWS.Timestamp != 1795000000123 || len(cw) != 1 || cw[0].Namespace != Namespace ||
		len(cw[0].Dimensions) != 1 || len(cw[0].Dimensions[0]) != 2 || cw[0].Metrics[0].Name != "Logins" {
		t.Fatalf("EMF record = %+v", rec)
	}
	if rec.Function != "login" || rec.Outcome != "created" || rec.Logins != 1 {
		t.Fatalf("values = %+v", rec)
	}
}

func TestValueWritesEMFWithUnit(t *testing.T) {
	var buf bytes.Buffer
	m := NewMetrics(&buf, "token-refresher")
	m.Value("TokenAge", "Seconds", 301.5, "appid", "wx1")
	var rec struct {
		AWS struct {
			CloudWatchMetrics []struct {
				Dimensions [][]string
				Metrics    []struct{ Name, Unit string }
			}
		} `json:"_aws"`
		TokenAge float64 `json:"TokenAge"`
		AppID    string  `json:"appid"`
	}
	if err := json.Unmarshal(buf.Bytes(), &rec); err != nil {
		t.Fatalf("not JSON: %v: %s", err, buf.String())
	}
	cw := rec.AWS.CloudWatchMetrics
	if len(cw) != 1 || cw[0].Metrics[0].Name != "TokenAge" || cw[0].Metrics[0].Unit != "Seconds" ||
		len(cw[0].Dimensions[0]) != 2 || rec.TokenAge != 301.5 || rec.AppID != "wx1" {
		t.Fatalf("EMF record = %s", buf.String())
	}
}
