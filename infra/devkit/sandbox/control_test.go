package sandbox

import (
	"net/http"
	"reflect"
	"testing"
	"time"
)

func TestControlAPI(t *testing.T) {
	h := start(t, DefaultConfig())
	var p Person

	steps := []struct {
		name string
		run  func(t *testing.T)
	}{
		{"create_person_with_generated_identities", func(t *testing.T) {
			h.control("POST", "/sandbox/people", nil, http.StatusCreated, &p)
			if p.ID == "" || p.MPOpenID == "" || p.OAOpenID == "" || p.UnionID == "" || p.Nickname == "" {
				t.Errorf("person %+v", p)
			}
		}},
		{"create_person_with_a_given_unionid_and_nickname", func(t *testing.T) {
			var q Person
			h.control("POST", "/sandbox/people", PersonSpec{UnionID: "oU_controlApiGivenUnionID0001", Nickname: "Ann"}, http.StatusCreated, &q)
			if q.UnionID != "oU_controlApiGivenUnionID0001" || q.Nickname != "Ann" {
				t.Errorf("person %+v", q)
			}
		}},
		{"taken_unionid_is_409", func(t *testing.T) {
			h.control("POST", "/sandbox/people", PersonSpec{UnionID: p.UnionID}, http.StatusConflict, nil)
		}},
		{"list_and_get_people", func(t *testing.T) {
			var list struct{ People []Person }
			h.control("GET", "/sandbox/people", nil, http.StatusOK, &list)
			if len(list.People) != 2 || !reflect.DeepEqual(list.People[0], p) {
				t.Errorf("people %+v", list.People)
			}
			var got Person
			h.control("GET", "/sandbox/people/"+p.ID, nil, http.StatusOK, &got)
			if !reflect.DeepEqual(got, p) {
				t.Errorf("got %+v, want %+v", got, p)
			}
			h.control("GET", "/sandbox/people/nobody", nil, http.StatusNotFound, nil)
		}},
		{"open_data_before_login_is_409", func(t *testing.T) {
			h.control("POST", "/sandbox/people/"+p.ID+"/open-data", nil, http.StatusConflict, nil)
		}},
		{"wx_login_code_logs_in_once", func(t *testing.T) {
			var out struct{ Code string }
			h.control("POST", "/sandbox/people/"+p.ID+"/wx-login", nil, http.StatusOK, &out)
			a := h.exchange(out.Code)
			wantOK(t, a)
			if a.OpenID != p.MPOpenID {
				t.Errorf("openid %q, want %q", a.OpenID, p.MPOpenID)
			}
			wantErr(t, h.exchange(out.Code), 40163)
			h.control("POST", "/sandbox/people/nobody/wx-login", nil, http.StatusNotFound, nil)
		}},
		{"clock_advances_and_sets", func(t *testing.T) {
			var before, after struct{ Now time.Time }
			h.control("GET", "/sandbox/clock", nil, http.StatusOK, &before)
			h.control("POST", "/sandbox/clock", map[string]string{"advance": "5m1s"}, http.StatusOK, &after)
			if d := after.Now.Sub(before.Now); d < 5*time.Minute+time.Second || d > 5*time.Minute+2*time.Second {
				t.Errorf("advanced %v", d)
			}
			h.control("POST", "/sandbox/clock", map[string]string{"now": "2027-01-01T00:00:00+08:00"}, http.StatusOK, &after)
			if d := after.Now.Sub(time.Date(2027, 1, 1, 0, 0, 0, 0, beijing)); d < 0 || d > time.Second {
				t.Errorf("set to %v", after.Now)
			}
			h.control("POST", "/sandbox/clock", map[string]string{"advance": "soon"}, http.StatusBadRequest, nil)
			h.control("POST", "/sandbox/clock", map[string]string{}, http.StatusBadRequest, nil)
		}},
		{"faults_arm_and_clear", func(t *testing.T) {
			h.control("POST", "/sandbox/faults", map[string]any{"path": "/cgi-bin/token", "errcode": -1, "count": 1}, http.StatusCreated, nil)
			wantErr(t, h.token(DevOfficialAccount), -1)
			wantOK(t, h.token(DevOfficialAccount))
			h.control("POST", "/sandbox/faults", map[string]any{"path": "/cgi-bin/token", "errcode": 45009}, http.StatusCreated, nil)
			wantErr(t, h.token(DevOfficialAccount), 45009)
			h.control("DELETE", "/sandbox/faults", nil, http.StatusNoContent, nil)
			wantOK(t, h.token(DevOfficialAccount))
			h.control("POST", "/sandbox/faults", map[string]any{"path": "/cgi-bin/token"}, http.StatusBadRequest, nil)
		}},
		{"stats_count_platform_calls_only", func(t *testing.T) {
			var stats struct{ Calls map[string]int }
			h.control("GET", "/sandbox/stats", nil, http.StatusOK, &stats)
			if stats.Calls["/cgi-bin/token"] != 4 || stats.Calls["/sns/jscode2session"] != 2 {
				t.Errorf("calls %v", stats.Calls)
			}
			for path := range stats.Calls {
				if len(path) >= 8 && path[:8] == "/sandbox" {
					t.Errorf("control call %s counted as a platform call", path)
				}
			}
		}},
		{"mini_program_switch_needs_a_value", func(t *testing.T) {
			h.control("POST", "/sandbox/apps/mini-program", map[string]any{}, http.StatusBadRequest, nil)
		}},
	}
	for _, st := range steps {
		if !t.Run(st.name, st.run) {
			return // later steps build on earlier ones
		}
	}
}
