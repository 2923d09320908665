package sandbox

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"time"
)

// controlRoutes maps the control API: JSON in and out, errors as 4xx with
// {"error": "..."}.
func (s *Sandbox) controlRoutes() *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /sandbox/people", s.postPerson)
	mux.HandleFunc("GET /sandbox/people", s.getPeople)
	mux.HandleFunc("GET /sandbox/people/{id}", s.getPerson)
	mux.HandleFunc("POST /sandbox/people/{id}/wx-login", s.codeRoute(s.WXLoginApp))
	mux.HandleFunc("POST /sandbox/people/{id}/open-data", s.postOpenData)
	mux.HandleFunc("POST /sandbox/people/{id}/app-login", s.codeRoute(s.AppLoginCode))
	mux.HandleFunc("GET /sandbox/apps", s.getApps)
	mux.HandleFunc("POST /sandbox/apps/mini-program", s.postMiniProgram)
	mux.HandleFunc("POST /sandbox/faults", s.postFault)
	mux.HandleFunc("DELETE /sandbox/faults", s.deleteFaults)
	mux.HandleFunc("GET /sandbox/clock", s.getClock)
	mux.HandleFunc("POST /sandbox/clock", s.postClock)
	mux.HandleFunc("GET /sandbox/stats", s.getStats)
	s.pushControlRoutes(mux) // push.go
	s.tokenControlRoutes(mux)
	s.rosterControl(mux)        // followers.go
	s.messageControlRoutes(mux) // messages.go
	s.phoneControlRoutes(mux)   // phone.go
	return mux
}

func controlError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]string{"error": msg})
}

// decodeBody reads an optional JSON body into v: an empty body leaves v as
// it is.
func decodeBody(r *http.Request, v any) error {
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil || len(body) == 0 {
		return err
	}
	if err := json.Unmarshal(body, v); err != nil {
		return errors.New("body is not the expected JSON: " + err.Error())
	}
	return nil
}

func (s *Sandbox) postPerson(w http.ResponseWriter, r *http.Request) {
	var spec PersonSpec
	if err := decodeBody(r, &spec); err != nil {
		controlError(w, http.StatusBadRequest, err.Error())
		return
	}
	p, err := s.createPerson(spec)
	if err != nil {
		controlError(w, http.StatusConflict, err.Error())
		return
	}
	writeJSON(w, http.StatusCreated, p)
}

func (s *Sandbox) getPeople(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string][]Person{"people": s.People()})
}

func (s *Sandbox) getPerson(w http.ResponseWriter, r *http.Request) {
	p, ok := s.Person(r.PathValue("id"))
	if !ok {
		controlError(w, http.StatusNotFound, ErrNoPerson.Error())
		return
	}
	writeJSON(w, http.StatusOK, p)
}

func (s *Sandbox) postOpenData(w http.ResponseWriter, r *http.Request) {
	appid, err := appBody(r)
	if err != nil {
		controlError(w, http.StatusBadRequest, err.Error())
		return
	}
	data, iv, err := s.OpenDataApp(r.PathValue("id"), appid)
	switch {
	case errors.Is(err, ErrNoPerson), errors.Is(err, ErrNoApp), errors.Is(err, ErrAppKind), errors.Is(err, ErrNoSession):
		controlError(w, appStatus(err), err.Error())
	case err != nil:
		controlError(w, http.StatusInternalServerError, err.Error())
	default:
		writeJSON(w, http.StatusOK, map[string]string{"encrypted_data": data, "iv": iv})
	}
}

func (s *Sandbox) postMiniProgram(w http.ResponseWriter, r *http.Request) {
	var req struct {
		RevealUnionID *bool `json:"reveal_unionid"`
	}
	if err := decodeBody(r, &req); err != nil || req.RevealUnionID == nil {
		controlError(w, http.StatusBadRequest, `want {"reveal_unionid": true|false}`)
		return
	}
	s.SetRevealUnionID(*req.RevealUnionID)
	writeJSON(w, http.StatusOK, map[string]bool{"reveal_unionid": *req.RevealUnionID})
}

type faultJSON struct {
	Path       string `json:"path"`
	ErrCode    int    `json:"errcode"`
	Count      int    `json:"count"`
	LatencyMS  int    `json:"latency_ms"`
	LostAnswer bool   `json:"lost_answer,omitempty"`
}

func (s *Sandbox) postFault(w http.ResponseWriter, r *http.Request) {
	var f faultJSON
	if err := decodeBody(r, &f); err != nil {
		controlError(w, http.StatusBadRequest, err.Error())
		return
	}
	err := s.InjectFault(Fault{
		Path:       f.Path,
		ErrCode:    f.ErrCode,
		Count:      f.Count,
		Latency:    time.Duration(f.LatencyMS) * time.Millisecond,
		LostAnswer: f.LostAnswer,
	})
	if err != nil {
		controlError(w, http.StatusBadRequest, err.Error())
		return
	}
	writeJSON(w, http.StatusCreated, f)
}

func (s *Sandbox) deleteFaults(w http.ResponseWriter, r *http.Request) {
	s.ClearFaults()
	w.WriteHeader(http.StatusNoContent)
}

func (s *Sandbox) getClock(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"now": s.clock.Now().Format(time.RFC3339Nano)})
}

func (s *Sandbox) postClock(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Advance string `json:"advance"`
		Now     string `json:"now"`
	}
	if err := decodeBody(r, &req); err != nil {
		controlError(w, http.StatusBadRequest, err.Error())
		return
	}
	switch {
	case (req.Advance == "") == (req.Now == ""):
		controlError(w, http.StatusBadRequest, `want exactly one of "advance" (a Go duration) or "now" (RFC 3339)`)
		return
	case req.Advance != "":
		d, err := time.ParseDuration(req.Advance)
		if err != nil {
			controlError(w, http.StatusBadRequest, err.Error())
			return
		}
		s.clock.Advance(d)
	default:
		t, err := time.Parse(time.RFC3339, req.Now)
		if err != nil {
			controlError(w, http.StatusBadRequest, err.Error())
			return
		}
		s.clock.Set(t)
	}
	s.getClock(w, r)
}

func (s *Sandbox) getStats(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]map[string]int{"calls": s.stats()})
}
