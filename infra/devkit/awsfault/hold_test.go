package awsfault

import (
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestHoldIsBounded checks that a timeout rule lets go of a client that
// never gives up: MaxHold is shortened here, the behaviour is the same at
// 30 s.
func TestHoldIsBounded(t *testing.T) {
	p, err := Start("http://127.0.0.1:9") // never reached: the rule answers
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	const bound = 200 * time.Millisecond
	p.mu.Lock()
	p.maxHold = bound
	p.mu.Unlock()
	if _, err := p.Add(Rule{Service: DynamoDB, Error: Timeout}); err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest("POST", p.URL()+"/", strings.NewReader(`{"TableName":"t"}`))
	req.Header.Set("X-Amz-Target", "DynamoDB_20120810.GetItem")
	req.Header.Set("Content-Type", "application/x-amz-json-1.0")
	began := time.Now()
	resp, err := http.DefaultClient.Do(req)
	if err == nil {
		resp.Body.Close()
		t.Fatalf("HTTP %d, want the connection closed without an answer", resp.StatusCode)
	}
	if took := time.Since(began); took < bound || took > 5*time.Second {
		t.Fatalf("let go after %v, want %v", took, bound)
	}
}
