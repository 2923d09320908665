package sandbox

import (
	"errors"
	"testing"
	"time"
)

func TestFaults(t *testing.T) {
	const tokenPath = "/cgi-bin/token"
	tests := []struct {
		name string
		run  func(t *testing.T, h *harness)
	}{
		{"count_fails_that_many_calls_then_serves_again", func(t *testing.T, h *harness) {
			h.sb.InjectFault(Fault{Path: tokenPath, ErrCode: -1, Count: 2})
			wantErr(t, h.token(DevOfficialAccount), -1)
			wantErr(t, h.token(DevOfficialAccount), -1)
			wantOK(t, h.token(DevOfficialAccount))
			if n := h.sb.Calls(tokenPath); n != 3 {
				t.Errorf("Calls = %d, want 3 (failures count)", n)
			}
		}},
		{"count_zero_fails_until_cleared", func(t *testing.T, h *harness) {
			h.sb.InjectFault(Fault{Path: tokenPath, ErrCode: 40164})
			for range 5 {
				wantErr(t, h.token(DevOfficialAccount), 40164)
			}
			h.sb.ClearFaults()
			wantOK(t, h.token(DevOfficialAccount))
		}},
		{"fault_answer_spends_no_quota", func(t *testing.T, h *harness) {
			h.sb.InjectFault(Fault{Path: tokenPath, ErrCode: -1, Count: 1})
			h.token(DevOfficialAccount)
			a := h.sb.apps[DevOfficialAccount.AppID]
			h.sb.mu.Lock()
			calls := a.tokenCalls
			h.sb.mu.Unlock()
			if calls != 0 {
				t.Errorf("a faulted call spent %d of the daily quota", calls)
			}
		}},
		{"fault_hits_only_its_path", func(t *testing.T, h *harness) {
			h.sb.InjectFault(Fault{Path: "/sns/jscode2session", ErrCode: -1})
			wantOK(t, h.token(DevOfficialAccount))
			p := h.sb.CreatePerson(PersonSpec{})
			wantErr(t, h.login(p.ID), -1)
		}},
		{"latency_delays_the_error", func(t *testing.T, h *harness) {
			const delay = 150 * time.Millisecond
			h.sb.InjectFault(Fault{Path: tokenPath, ErrCode: 45009, Count: 1, Latency: delay})
			began := time.Now()
			wantErr(t, h.token(DevOfficialAccount), 45009)
			if took := time.Since(began); took < delay {
				t.Errorf("answered after %v, want at least %v", took, delay)
			}
		}},
		{"latency_alone_delays_a_normal_answer", func(t *testing.T, h *harness) {
			const delay = 150 * time.Millisecond
			h.sb.InjectFault(Fault{Path: tokenPath, Count: 1, Latency: delay})
			began := time.Now()
			wantOK(t, h.token(DevOfficialAccount))
			if took := time.Since(began); took < delay {
				t.Errorf("answered after %v, want at least %v", took, delay)
			}
			began = time.Now()
			wantOK(t, h.token(DevOfficialAccount))
			if took := time.Since(began); took >= delay {
				t.Errorf("second call took %v: the one-shot latency stayed armed", took)
			}
		}},
		{"empty_fault_is_refused", func(t *testing.T, h *harness) {
			for _, f := range []Fault{{Path: tokenPath}, {ErrCode: -1}, {Path: tokenPath, ErrCode: -1, Count: -1}} {
				if err := h.sb.InjectFault(f); !errors.Is(err, ErrEmptyFault) {
					t.Errorf("InjectFault(%+v) = %v, want ErrEmptyFault", f, err)
				}
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { tt.run(t, start(t, DefaultConfig())) })
	}
}
