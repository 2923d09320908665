package awsfault

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
)

// Control returns the HTTP face of the rules, for whatever path it is
// mounted at: POST a Rule (201 and its RuleState), GET {"rules": [...]}
// with how many times each fired, DELETE to clear them all (204). Errors are
// 4xx with {"error": "..."}.
func (p *Proxy) Control() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.Method {
		case http.MethodPost:
			var rule Rule
			b, err := io.ReadAll(io.LimitReader(r.Body, 64<<10))
			if err != nil {
				writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
				return
			}
			dec := json.NewDecoder(bytes.NewReader(b))
			dec.DisallowUnknownFields() // a misspelt field would widen the rule silently
			if err := dec.Decode(&rule); err != nil {
				writeJSON(w, http.StatusBadRequest, map[string]string{"error": "awsfault: body is not a rule " +
					`({"service", "operation", "match", "count", "error"}): ` + err.Error()})
				return
			}
			st, err := p.Add(rule)
			if err != nil {
				writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
				return
			}
			writeJSON(w, http.StatusCreated, st)
		case http.MethodGet:
			writeJSON(w, http.StatusOK, map[string][]RuleState{"rules": p.List()})
		case http.MethodDelete:
			p.Clear()
			w.WriteHeader(http.StatusNoContent)
		default:
			w.Header().Set("Allow", "GET, POST, DELETE")
			writeJSON(w, http.StatusMethodNotAllowed, map[string]string{"error": "awsfault: use GET, POST or DELETE"})
		}
	})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}
