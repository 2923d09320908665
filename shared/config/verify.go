package config

import (
	"errors"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"
	"unicode/utf8"
)

// VerifyFiles are the domain verification files WeChat's consoles ask to
// find at the root of a domain, by file name, with their exact content:
// MP_verify_<token>.txt for an official account's web authorization
// domain (网页授权域名), a 10-character name for a mini program's
// business domain (业务域名). oauth-callback serves them at GET /<name>.
type VerifyFiles map[string]string

// Limits on VerifyFiles, checked when the configuration loads. WeChat's
// files hold a 16- or 32-character token; the limits only keep a pasted
// document or a stray key out of a public route.
const (
	MaxVerifyFiles    = 20
	MaxVerifyFileSize = 1024 // bytes
)

// verifyFileName is a file name, not a path: letters, digits, '_' and '-',
// then ".txt", the only kind WeChat asks for.
var verifyFileName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]{0,63}\.txt$`)

// ErrVerifyFile reports a verify_files entry that cannot be served.
var ErrVerifyFile = errors.New("config: verify_files")

// Check reports every entry that is not a plain file name ending in .txt
// with 1 to MaxVerifyFileSize bytes of content, and more than
// MaxVerifyFiles entries. The names appear in the error (they are public:
// anyone may fetch them), the contents never do.
func (v VerifyFiles) Check() error {
	var bad []string
	if len(v) > MaxVerifyFiles {
		bad = append(bad, fmt.Sprintf("%d files (at most %d)", len(v), MaxVerifyFiles))
	}
	for _, name := range slices.Sorted(maps.Keys(v)) {
		content := v[name]
		switch {
		case !verifyFileName.MatchString(name):
			bad = append(bad, fmt.Sprintf("%q is not a file name like MP_verify_abc123.txt (letters, digits, _ and -, at most 64, then .txt)", name))
		case content == "":
			bad = append(bad, fmt.Sprintf("%s is empty", name))
		case len(content) > MaxVerifyFileSize:
			bad = append(bad, fmt.Sprintf("%s is %d bytes (at most %d)", name, len(content), MaxVerifyFileSize))
		case !utf8.ValidString(content):
			bad = append(bad, fmt.Sprintf("%s is not UTF-8 text", name))
		}
	}
	if len(bad) > 0 {
		return fmt.Errorf("%w: %s", ErrVerifyFile, strings.Join(bad, "; "))
	}
	return nil
}
