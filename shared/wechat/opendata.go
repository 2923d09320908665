package wechat

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// ErrOpenData reports encrypted open data that cannot be decrypted: a stale
// session_key, a truncated payload or a wrong iv. The client should call
// wx.login again and resend.
var ErrOpenData error = clientDataError("wechat: open data cannot be decrypted")

// clientDataError is data the client sent that cannot be used: like a bad
// code (ClassCode), the client must fetch it anew, and retrying cannot help.
type clientDataError string

func (e clientDataError) Error() string { return string(e) }

// Class is ClassCode: the client must obtain new data.
func (e clientDataError) Class() Class { return ClassCode }

// ErrWatermark reports open data that decrypted but was issued for another
// appid (or carries no watermark at all).
var ErrWatermark = errors.New("wechat: open data watermark does not match our appid")

// Watermark is the platform's stamp on decrypted open data.
type Watermark struct {
	AppID     string `json:"appid"`
	Timestamp int64  `json:"timestamp"`
}

// OpenData is a decrypted open-data payload (wx.getUserInfo and relatives).
// Raw keeps the whole plaintext for callers that need more fields.
type OpenData struct {
	OpenID    string          `json:"openId"`
	UnionID   string          `json:"unionId"`
	Watermark Watermark       `json:"watermark"`
	Raw       json.RawMessage `json:"-"`
}

// DecryptOpenData decrypts encryptedData with the user's session_key and the
// iv sent along with it (AES-128-CBC, PKCS#7), and checks that the watermark
// names appid. All three inputs are base64 as the mini program sends them;
// '+' turned into ' ' by form encoding on the way is repaired.
func DecryptOpenData(sessionKey, encryptedData, iv, appid string) (OpenData, error) {
	key, err := decodeB64(sessionKey)
	if err != nil || len(key) != 16 {
		return OpenData{}, fmt.Errorf("%w: session_key is not 16 bytes of base64", ErrOpenData)
	}
	ivb, err := decodeB64(iv)
	if err != nil || len(ivb) != aes.BlockSize {
		return OpenData{}, fmt.Errorf("%w: iv is not 16 bytes of base64", ErrOpenData)
	}
	ct, err := decodeB64(encryptedData)
	if err != nil || len(ct) == 0 || len(ct)%aes.BlockSize != 0 {
		return OpenData{}, fmt.Errorf("%w: encryptedData is not whole AES blocks of base64", ErrOpenData)
	}
	block, _ := aes.NewCipher(key) // 16-byte key: cannot fail
	pt := make([]byte, len(ct))
	cipher.NewCBCDecrypter(block, ivb).CryptBlocks(pt, ct)
	pt, err = unpad(pt, aes.BlockSize)
	if err != nil {
		return OpenData{}, err
	}
	var d OpenData
	if err := json.Unmarshal(pt, &d); err != nil {
		return OpenData{}, fmt.Errorf("%w: plaintext is not JSON", ErrOpenData)
	}
	if d.Watermark.AppID == "" || d.Watermark.AppID != appid {
		return OpenData{}, ErrWatermark
	}
	d.Raw = pt
	return d, nil
}

// EncryptOpenData is the platform's side of DecryptOpenData: it stamps the
// payload with a watermark for appid and encrypts it under sessionKey with a
// fresh iv. The sandbox uses it to play the WeChat client.
func EncryptOpenData(sessionKey, appid string, payload map[string]any, now time.Time) (encryptedData, iv string, err error) {
	key, err := decodeB64(sessionKey)
	if err != nil || len(key) != 16 {
		return "", "", fmt.Errorf("%w: session_key is not 16 bytes of base64", ErrOpenData)
	}
	body := make(map[string]any, len(payload)+1)
	for k, v := range payload {
		body[k] = v
	}
	body["watermark"] = Watermark{AppID: appid, Timestamp: now.Unix()}
	pt, err := json.Marshal(body)
	if err != nil {
		return "", "", err
	}
	pt = pad(pt, aes.BlockSize)
	ivb := make([]byte, aes.BlockSize)
	rand.Read(ivb)
	block, _ := aes.NewCipher(key)
	ct := make([]byte, len(pt))
	cipher.NewCBCEncrypter(block, ivb).CryptBlocks(ct, pt)
	return base64.StdEncoding.EncodeToString(ct), base64.StdEncoding.EncodeToString(ivb), nil
}

// decodeB64 accepts standard base64 with or without padding, repairing the
// '+' that form decoding turns into ' ' and dropping line breaks. Spaces are
// repaired, not trimmed: a '+' at either end arrives as a space too.
func decodeB64(s string) ([]byte, error) {
	s = b64Repair.Replace(s)
	return base64.StdEncoding.DecodeString(padB64(s))
}

var b64Repair = strings.NewReplacer(" ", "+", "\r", "", "\n", "", "\t", "")

func padB64(s string) string {
	if n := len(s) % 4; n != 0 {
		s += strings.Repeat("=", 4-n)
	}
	return s
}

// pad appends PKCS#7 padding up to a multiple of size.
func pad(b []byte, size int) []byte {
	n := size - len(b)%size
	return append(b, bytes.Repeat([]byte{byte(n)}, n)...)
}

// unpad strictly checks and removes PKCS#7 padding: every padding byte must
// carry the padding length. A wrong key almost always fails here.
func unpad(b []byte, size int) ([]byte, error) {
	if len(b) == 0 || len(b)%size != 0 {
		return nil, fmt.Errorf("%w: bad padding", ErrOpenData)
	}
	n := int(b[len(b)-1])
	if n == 0 || n > size || n > len(b) {
		return nil, fmt.Errorf("%w: bad padding", ErrOpenData)
	}
	for _, c := range b[len(b)-n:] {
		if int(c) != n {
			return nil, fmt.Errorf("%w: bad padding", ErrOpenData)
		}
	}
	return b[:len(b)-n], nil
}
