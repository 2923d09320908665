package awsfault

import "testing"

// ForTest starts a proxy in front of target (awstest.Endpoint(), say) for
// one test, arms rules on it, and stops it when the test ends. Clients
// built from p.Config(cfg) go through it.
func ForTest(t testing.TB, target string, rules ...Rule) *Proxy {
	t.Helper()
	p, err := Start(target)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	for _, r := range rules {
		if _, err := p.Add(r); err != nil {
			t.Fatal(err)
		}
	}
	return p
}
