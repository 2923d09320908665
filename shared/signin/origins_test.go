package signin

import (
	"errors"
	"strings"
	"testing"
)

func TestOriginsCheck(t *testing.T) {
	const h5 = "http://127.0.0.1:8080"
	host := strings.TrimPrefix(h5, "http://")
	o, err := NewOrigins(h5)
	if err != nil {
		t.Fatal(err)
	}
	refused := map[string]string{
		"missing":              "",
		"other_origin":         "https://evil.example/",
		"other_port":           "http://127.0.0.1:1/",
		"other_scheme":         "https://" + host + "/",
		"suffix_host":          "http://" + host + ".evil.example/",
		"credentials":          "http://" + host + "@evil.example/",
		"backslash":            "http://" + host + "\\@evil.example/",
		"scheme_relative":      "//evil.example/",
		"relative":             "/landing",
		"javascript":           "javascript:alert(document.domain)//" + host,
		"data":                 "data:text/html,<script>alert(1)</script>",
		"fragment":             h5 + "/#/orders",
		"tab_in_it":            "http://" + host + "/\tx",
		"too_long":             h5 + "/" + strings.Repeat("a", maxReturnTo),
		"encoded_host_confuse": "http://evil.example%2f@" + host + "/",
	}
	for name, rt := range refused {
		t.Run(name, func(t *testing.T) {
			var r *Refusal
			if err := o.Check(rt); !errors.As(err, &r) || r.Reason != "invalid_return_to" {
				t.Errorf("Check(%q) = %v, want invalid_return_to", rt, err)
			}
		})
	}
	t.Run("allowed_variants", func(t *testing.T) {
		for _, rt := range []string{h5, h5 + "/", "HTTP://" + strings.ToUpper(host) + "/Path?q=1"} {
			if err := o.Check(rt); err != nil {
				t.Errorf("%s: %v", rt, err)
			}
		}
	})
}

func TestParseOrigins(t *testing.T) {
	got, err := ParseOrigins(" https://H5.example.com:443 , http://localhost:8080,")
	if err != nil || strings.Join(got, " ") != "https://h5.example.com http://localhost:8080" {
		t.Errorf("ParseOrigins = %v, %v", got, err)
	}
	for _, bad := range []string{"https://h5.example.com,*.example.com", "h5.example.com", "https://h5.example.com/app", "https://u@h5.example.com"} {
		if _, err := ParseOrigins(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
