package sandbox

import (
	"net/http"
	"sync"
	"testing"

	"wxbridge/shared/wechat"
)

const goroutines = 50

// hammer runs f on many goroutines at once and waits for them.
func hammer(f func(i int)) {
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range goroutines {
		wg.Go(func() {
			<-start
			f(i)
		})
	}
	close(start)
	wg.Wait()
}

func TestConcurrency(t *testing.T) {
	t.Run("people_log_in_and_decrypt_in_parallel", func(t *testing.T) {
		h := start(t, DefaultConfig())
		var mu sync.Mutex
		openids := map[string]bool{}
		hammer(func(int) {
			var p Person
			h.control("POST", "/sandbox/people", nil, http.StatusCreated, &p)
			a := h.login(p.ID)
			if a.ErrCode != 0 || a.OpenID != p.MPOpenID {
				t.Errorf("login of %s: %+v", p.ID, a)
				return
			}
			data, iv, err := h.sb.OpenData(p.ID)
			if err != nil {
				t.Error(err)
				return
			}
			d, err := wechat.DecryptOpenData(a.SessionKey, data, iv, DevMiniProgram.AppID)
			if err != nil || d.UnionID != p.UnionID {
				t.Errorf("open data of %s: %v %+v", p.ID, err, d)
			}
			mu.Lock()
			openids[p.MPOpenID] = true
			mu.Unlock()
		})
		if len(openids) != goroutines || len(h.sb.People()) != goroutines {
			t.Errorf("%d distinct openids, %d people, want %d", len(openids), len(h.sb.People()), goroutines)
		}
		if n := h.sb.Calls("/sns/jscode2session"); n != goroutines {
			t.Errorf("Calls = %d, want %d", n, goroutines)
		}
	})

	t.Run("per_minute_login_limit_holds_under_a_burst", func(t *testing.T) {
		cfg := DefaultConfig()
		cfg.LoginPerMinute = 20
		h := start(t, cfg)
		p := h.sb.CreatePerson(PersonSpec{})
		codes := make([]int, goroutines)
		hammer(func(i int) { codes[i] = h.login(p.ID).ErrCode })
		if ok, limited := count(codes, 0), count(codes, 45011); ok != 20 || limited != goroutines-20 {
			t.Errorf("%d logins, %d 45011, want 20 and %d", ok, limited, goroutines-20)
		}
	})

	t.Run("daily_token_quota_holds_under_a_burst", func(t *testing.T) {
		cfg := DefaultConfig()
		cfg.TokenDailyQuota = 30
		h := start(t, cfg)
		codes := make([]int, goroutines)
		tokens := make([]string, goroutines)
		hammer(func(i int) {
			a := h.token(DevOfficialAccount)
			codes[i], tokens[i] = a.ErrCode, a.AccessToken
		})
		if ok, refused := count(codes, 0), count(codes, 45009); ok != 30 || refused != goroutines-30 {
			t.Errorf("%d tokens, %d 45009, want 30 and %d", ok, refused, goroutines-30)
		}
		// However the calls interleaved, exactly the last two tokens issued
		// still work.
		working := 0
		for i, tok := range tokens {
			if codes[i] == 0 && h.callbackIP(tok).ErrCode == 0 {
				working++
			}
		}
		if working != 2 {
			t.Errorf("%d tokens work, want 2 (latest and the one in its overlap)", working)
		}
	})

	t.Run("normal_stable_token_callers_share_one_token", func(t *testing.T) {
		h := start(t, DefaultConfig())
		tokens := make([]string, goroutines)
		hammer(func(i int) { tokens[i] = h.stable(DevOfficialAccount, false).AccessToken })
		for _, tok := range tokens {
			if tok == "" || tok != tokens[0] {
				t.Fatalf("callers got different stable tokens: %q vs %q", tok, tokens[0])
			}
		}
	})

	t.Run("forced_refreshes_race_to_one_winner", func(t *testing.T) {
		h := start(t, DefaultConfig())
		codes := make([]int, goroutines)
		hammer(func(i int) { codes[i] = h.stable(DevOfficialAccount, true).ErrCode })
		if ok := count(codes, 0); ok != 1 || count(codes, 45011) != goroutines-1 {
			t.Errorf("%d forced refreshes succeeded at once, want 1 (30 s spacing)", ok)
		}
	})

	t.Run("faults_with_a_count_are_consumed_exactly", func(t *testing.T) {
		h := start(t, DefaultConfig())
		h.sb.InjectFault(Fault{Path: "/cgi-bin/stable_token", ErrCode: -1, Count: 10})
		codes := make([]int, goroutines)
		hammer(func(i int) {
			codes[i] = h.stable(DevMiniProgram, false).ErrCode
			h.sb.Calls("/cgi-bin/stable_token")
			h.sb.Clock().Now()
		})
		if n := count(codes, -1); n != 10 {
			t.Errorf("%d calls faulted, want 10", n)
		}
	})
}

func count(codes []int, code int) int {
	n := 0
	for _, c := range codes {
		if c == code {
			n++
		}
	}
	return n
}
