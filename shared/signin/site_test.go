package signin

import (
	"testing"
)

func TestSiteBase(t *testing.T) {
	const execute = "https://abc123.execute-api.us-east-1.amazonaws.com"
	cases := []struct {
		name, public, arrived string
		base                  string
		elsewhere             bool
	}{
		{"own_address", "", execute, execute, false},
		{"own_address_of_a_named_stage", "", execute + "/prod", execute + "/prod", false},
		{"custom_domain_reached_there", "https://api.example.com", "https://api.example.com", "https://api.example.com", false},
		{"base_path_reached_there", "https://api.example.com/wx/", "https://API.example.com:443", "https://api.example.com/wx", false},
		{"base_path_reached_at_execute_api", "https://api.example.com/wx", execute, "https://api.example.com/wx", true},
		{"devstack_http", "http://127.0.0.1:8080", "https://127.0.0.1:8080", "http://127.0.0.1:8080", false},
		{"devstack_by_another_name", "http://127.0.0.1:8080", "https://localhost:8080", "http://127.0.0.1:8080", true},
		{"address_unknown", "https://api.example.com/wx", "", "https://api.example.com/wx", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s, err := NewSite(c.public)
			if err != nil {
				t.Fatal(err)
			}
			base, elsewhere, err := s.Base(c.arrived)
			if err != nil || base != c.base || elsewhere != c.elsewhere {
				t.Errorf("Base(%q) = %q, %v, %v; want %q, %v", c.arrived, base, elsewhere, err, c.base, c.elsewhere)
			}
		})
	}
	if _, _, err := (Site{}).Base(""); err == nil {
		t.Error("no public URL and no address: want an error")
	}
	for _, bad := range []string{"ftp://api.example.com", "https://api.example.com/?x=1", "https://api.example.com/#x", "api.example.com/wx", "https://u:p@api.example.com"} {
		if _, err := NewSite(bad); err == nil {
			t.Errorf("NewSite(%q) accepted", bad)
		}
	}
}
