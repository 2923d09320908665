package sandbox

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"net/http"
)

// errText is the platform's errmsg for each errcode the sandbox answers.
// The platform is not consistent about what precedes the rid: some messages
// end with ", rid: …", others with " rid: …" (captured answers of both kinds
// are quoted in docs/sandbox.md). The sandbox reproduces both so that
// clients are tested against both.
var errText = map[int]struct {
	msg   string
	comma bool
}{
	-1:    {"system error", true},
	40001: {"invalid credential, access_token is invalid or not latest", false},
	40002: {"invalid grant_type", true},
	40003: {"invalid openid", true},
	40013: {"invalid appid", true},
	40029: {"invalid code", true},
	40053: {"invalid action info, please check document", true},
	40125: {"invalid appsecret", true},
	40163: {"code been used", true},
	40030: {"invalid refresh_token", true},
	41003: {"refresh_token missing", true},
	41009: {"missing openid", true},
	42002: {"refresh_token expired", true},
	40164: {"invalid ip, not in whitelist", true},
	41001: {"access_token missing", true},
	41002: {"appid missing", true},
	41004: {"appsecret missing", true},
	41008: {"missing code", true},
	42001: {"access_token expired", true},
	40008: {"invalid message type", true},
	43002: {"require POST method", true},
	44004: {"empty content", true},
	44002: {"empty post data", true},
	45009: {"reach max api daily quota limit", false},
	45011: {"api minute-quota reach limit, must slower, retry next minute", false},
	47001: {"data format error", true},
	48001: {"api unauthorized", true},
}

// errmsg is the platform's message for code, ending in a fresh rid.
func (s *Sandbox) errmsg(code int) string {
	t, ok := errText[code]
	if !ok {
		t.msg, t.comma = fmt.Sprintf("sandbox injected error %d", code), true
	}
	sep := " "
	if t.comma {
		sep = ", "
	}
	return t.msg + sep + "rid: " + s.rid()
}

// rid makes a request id shaped like the platform's: the first group is the
// Unix time in hex, the other two are random.
func (s *Sandbox) rid() string {
	var b [8]byte
	rand.Read(b[:])
	return fmt.Sprintf("%08x-%08x-%08x", uint32(s.clock.Now().Unix()),
		binary.BigEndian.Uint32(b[:4]), binary.BigEndian.Uint32(b[4:]))
}

// platformError is a platform answer with a nonzero errcode.
type platformError struct{ code int }

func (e *platformError) Error() string { return fmt.Sprintf("errcode %d", e.code) }

func errcode(code int) error { return &platformError{code} }

// fail writes the platform's error answer for code: HTTP 200, as always.
func (s *Sandbox) fail(w http.ResponseWriter, code int) {
	writeJSON(w, http.StatusOK, struct {
		ErrCode int    `json:"errcode"`
		ErrMsg  string `json:"errmsg"`
	}{code, s.errmsg(code)})
}

// answer writes a platform result, or the error answer if err is one.
func (s *Sandbox) answer(w http.ResponseWriter, v any, err error) {
	if pe, ok := err.(*platformError); ok {
		s.fail(w, pe.code)
		return
	}
	if err != nil {
		s.fail(w, -1)
		return
	}
	writeJSON(w, http.StatusOK, v)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	if w.Header().Get("Content-Type") == "" {
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
	}
	w.WriteHeader(status)
	w.Write(body)
}
