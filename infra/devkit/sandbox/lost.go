package sandbox

import (
	"context"
	"net/http"
	"time"
)

// loseAnswer serves r in full, then drops the answer: after latency it
// closes the connection without a response, as when the platform's answer
// is lost on the way back. The call runs to its end even if the client
// gives up first, as it would on the platform.
func (s *Sandbox) loseAnswer(w http.ResponseWriter, r *http.Request, latency time.Duration) {
	s.api.ServeHTTP(&droppedAnswer{header: http.Header{}}, r.WithContext(context.WithoutCancel(r.Context())))
	if latency > 0 {
		t := time.NewTimer(latency)
		select {
		case <-t.C:
		case <-r.Context().Done(): // the client gave up; nobody waits for the close
			t.Stop()
		}
	}
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		// HTTP/2, or a writer that cannot be hijacked: aborting the
		// handler resets the stream (or closes the connection) without an
		// answer all the same.
		panic(http.ErrAbortHandler)
	}
	conn.Close()
}

// droppedAnswer is the ResponseWriter of a call whose answer is lost: it
// takes the answer and keeps none of it.
type droppedAnswer struct{ header http.Header }

func (d *droppedAnswer) Header() http.Header         { return d.header }
func (d *droppedAnswer) Write(b []byte) (int, error) { return len(b), nil }
func (d *droppedAnswer) WriteHeader(int)             {}
