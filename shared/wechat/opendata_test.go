package wechat

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
)

// The sample of WeChat's mini-program documentation, "开放数据校验与解密"
// (https://developers.weixin.qq.com/miniprogram/dev/framework/open-ability/signature.html),
// shipped in its demo download (aes-sample.zip, WXBizDataCrypt demos in
// several languages) and reproduced in many SDK tests.
const (
	sampleAppID      = "wx4f4bc4dec97d474b"
	sampleSessionKey = "tiihtNczf5v6AKRyjwEUhQ=="
	sampleIV         = "r7BXXKkLb8qrSNn05n0qiA=="
	sampleData       = "CiyLU1Aw2KjvrjMdj8YKliAjtP4gsMZMQmRzooG2xrDcvSnxIMXFufNstNGTyaGS" +
		"9uT5geRa0W4oTOb1WT7fJlAC+oNPdbB+3hVbJSRgv+4lGOETKUQz6OYStslQ142d" +
		"NCuabNPGBzlooOmB231qMM85d2/fV6ChevvXvQP8Hkue1poOFtnEtpyxVLW1zAo6" +
		"/1Xx1COxFvrc2d7UL/lmHInNlxuacJXwu0fjpXfz/YqYzBIBzD6WUfTIF9GRHpOn" +
		"/Hz7saL8xz+W//FRAUid1OksQaQx4CMs8LOddcQhULW4ucetDf96JcR3g0gfRK4P" +
		"C7E/r7Z6xNrXd2UIeorGj5Ef7b1pJAYB6Y5anaHqZ9J6nKEBvB4DnNLIVWSgARns" +
		"/8wR2SiRS7MNACwTyrGvt9ts8p12PKFdlqYTopNHR1Vf7XjfhQlVsAJdNiKdYmYV" +
		"oKlaRv85IfVunYzO0IKXsyl7JCUjCpoG20f0a04COwfneQAGGwd5oa+T8yO5hzuy" +
		"Db/XcxxmK01EpqOyuxINew=="
	// What the sample decrypts to, as printed next to it.
	sampleOpenID    = "oGZUI0egBJY1zhBYw2KhdUfwVJJE"
	sampleUnionID   = "ocMvos6NjeKLIBqg5Mr9QjxrP1FA"
	sampleTimestamp = 1477314187
)

func TestDecryptOpenData(t *testing.T) {
	t.Run("published_sample_decrypts_to_published_ids", func(t *testing.T) {
		d, err := DecryptOpenData(sampleSessionKey, sampleData, sampleIV, sampleAppID)
		if err != nil {
			t.Fatal(err)
		}
		if d.OpenID != sampleOpenID || d.UnionID != sampleUnionID {
			t.Errorf("ids = %q, %q; want %q, %q", d.OpenID, d.UnionID, sampleOpenID, sampleUnionID)
		}
		if d.Watermark != (Watermark{AppID: sampleAppID, Timestamp: sampleTimestamp}) {
			t.Errorf("watermark = %+v", d.Watermark)
		}
		var raw map[string]any
		if err := json.Unmarshal(d.Raw, &raw); err != nil || raw["nickName"] != "Band" {
			t.Errorf("Raw = %s (%v), want the whole plaintext with nickName Band", d.Raw, err)
		}
	})

	t.Run("plus_turned_into_space_still_decrypts", func(t *testing.T) {
		if !strings.Contains(sampleData, "+") {
			t.Fatal("sample has no '+', test proves nothing")
		}
		spaced := strings.ReplaceAll(sampleData, "+", " ")
		d, err := DecryptOpenData(sampleSessionKey, spaced, sampleIV, sampleAppID)
		if err != nil || d.OpenID != sampleOpenID {
			t.Fatalf("got %q, %v", d.OpenID, err)
		}
	})

	t.Run("plus_at_either_end_turned_into_space_still_decrypts", func(t *testing.T) {
		// A '+' first in the iv or last before the padding of the data
		// becomes a leading or trailing space, which trimming would lose.
		key := mustKey(t, 0x11)
		for i := 0; ; i++ {
			if i == 20000 {
				t.Fatal("no iv starting with '+' in 20000 tries")
			}
			data, iv, err := EncryptOpenData(key, "wxapp", map[string]any{"openId": "o1"}, time.Now())
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(iv, "+") {
				continue
			}
			iv = strings.ReplaceAll(iv, "+", " ")
			data = strings.ReplaceAll(data, "+", " ")
			d, err := DecryptOpenData(key, data, iv, "wxapp")
			if err != nil || d.OpenID != "o1" {
				t.Fatalf("iv %q: got %q, %v", iv, d.OpenID, err)
			}
			return
		}
	})

	t.Run("line_broken_and_unpadded_base64_decrypts", func(t *testing.T) {
		var wrapped strings.Builder
		for i := 0; i < len(sampleData); i += 32 {
			wrapped.WriteString(sampleData[i:min(i+32, len(sampleData))])
			wrapped.WriteString("\n")
		}
		iv := strings.TrimRight(sampleIV, "=")
		d, err := DecryptOpenData(strings.TrimRight(sampleSessionKey, "="), wrapped.String(), iv, sampleAppID)
		if err != nil || d.OpenID != sampleOpenID {
			t.Fatalf("got %q, %v", d.OpenID, err)
		}
	})

	t.Run("wrong_session_key_is_ErrOpenData", func(t *testing.T) {
		for b := byte(1); b < 40; b++ {
			_, err := DecryptOpenData(mustKey(t, b), sampleData, sampleIV, sampleAppID)
			if !errors.Is(err, ErrOpenData) {
				t.Fatalf("key byte %d: err = %v, want ErrOpenData", b, err)
			}
		}
	})

	t.Run("other_appid_is_ErrWatermark", func(t *testing.T) {
		_, err := DecryptOpenData(sampleSessionKey, sampleData, sampleIV, "wx0000000000000000")
		if !errors.Is(err, ErrWatermark) {
			t.Fatalf("err = %v, want ErrWatermark", err)
		}
		if errors.Is(err, ErrOpenData) {
			t.Error("a watermark mismatch must not look like a stale session_key")
		}
	})

	t.Run("missing_watermark_is_ErrWatermark", func(t *testing.T) {
		data, iv := encryptRaw(t, sampleSessionKey, pkcs7([]byte(`{"openId":"o1"}`)))
		_, err := DecryptOpenData(sampleSessionKey, data, iv, "")
		if !errors.Is(err, ErrWatermark) {
			t.Fatalf("err = %v, want ErrWatermark (an empty appid must not match an absent watermark)", err)
		}
	})

	t.Run("malformed_inputs_are_ErrOpenData", func(t *testing.T) {
		cases := map[string][3]string{
			"short_key":        {"AAAA", sampleData, sampleIV},
			"long_key":         {base64.StdEncoding.EncodeToString(make([]byte, 32)), sampleData, sampleIV},
			"key_not_base64":   {"!!!!!!!!!!!!!!!!!!!!!!!!", sampleData, sampleIV},
			"short_iv":         {sampleSessionKey, sampleData, "AAAA"},
			"empty_data":       {sampleSessionKey, "", sampleIV},
			"data_not_blocks":  {sampleSessionKey, sampleData[:len(sampleData)-24] + "AAAA", sampleIV},
			"data_not_base64":  {sampleSessionKey, "%%%%" + sampleData[4:], sampleIV},
			"truncated_blocks": {sampleSessionKey, base64.StdEncoding.EncodeToString(mustB64(t, sampleData)[:64]), sampleIV},
		}
		for name, c := range cases {
			t.Run(name, func(t *testing.T) {
				_, err := DecryptOpenData(c[0], c[1], c[2], sampleAppID)
				if !errors.Is(err, ErrOpenData) {
					t.Fatalf("err = %v, want ErrOpenData", err)
				}
			})
		}
	})

	t.Run("inconsistent_padding_is_rejected", func(t *testing.T) {
		// Lenient unpadding (drop the last byte's value of bytes, as the
		// Python demo does) accepts these; a wrong key then passes for
		// right now and then.
		body := []byte(`{"openId":"o1","watermark":{"appid":"wxapp","timestamp":1}}`)
		good := pkcs7(body)
		n := int(good[len(good)-1])
		cases := map[string]func([]byte) []byte{
			"pad_byte_differs": func(b []byte) []byte { b[len(b)-n] ^= 0x01; return b },
			"pad_zero":         func(b []byte) []byte { return append(b[:len(b)-n], make([]byte, n)...) },
			"pad_beyond_block": func(b []byte) []byte {
				return append(b[:len(b)-n], bytes.Repeat([]byte{0x11}, n)...)
			},
			"no_padding": func(b []byte) []byte {
				return append(b[:len(b)-n], bytes.Repeat([]byte(" "), n)...)
			},
		}
		if n < 2 {
			t.Fatalf("test needs at least 2 padding bytes, body gives %d", n)
		}
		data, iv := encryptRaw(t, sampleSessionKey, good)
		if _, err := DecryptOpenData(sampleSessionKey, data, iv, "wxapp"); err != nil {
			t.Fatalf("control case with good padding: %v", err)
		}
		for name, tamper := range cases {
			t.Run(name, func(t *testing.T) {
				pt := tamper(append([]byte(nil), good...))
				data, iv := encryptRaw(t, sampleSessionKey, pt)
				_, err := DecryptOpenData(sampleSessionKey, data, iv, "wxapp")
				if !errors.Is(err, ErrOpenData) {
					t.Fatalf("err = %v, want ErrOpenData", err)
				}
			})
		}
	})
}

func TestEncryptOpenData(t *testing.T) {
	now := time.Unix(1700000000, 0)
	payload := map[string]any{"openId": "o-round", "unionId": "u-round", "nickName": "测试"}

	data, iv, err := EncryptOpenData(sampleSessionKey, "wxround", payload, now)
	if err != nil {
		t.Fatal(err)
	}
	d, err := DecryptOpenData(sampleSessionKey, data, iv, "wxround")
	if err != nil {
		t.Fatal(err)
	}
	if d.OpenID != "o-round" || d.UnionID != "u-round" {
		t.Errorf("ids = %q, %q", d.OpenID, d.UnionID)
	}
	if d.Watermark != (Watermark{AppID: "wxround", Timestamp: now.Unix()}) {
		t.Errorf("watermark = %+v", d.Watermark)
	}
	if !strings.Contains(string(d.Raw), "测试") {
		t.Errorf("Raw lost a field: %s", d.Raw)
	}
	if _, ok := payload["watermark"]; ok {
		t.Error("EncryptOpenData modified the caller's payload")
	}

	data2, iv2, err := EncryptOpenData(sampleSessionKey, "wxround", payload, now)
	if err != nil {
		t.Fatal(err)
	}
	if iv2 == iv || data2 == data {
		t.Error("two encryptions share an iv or ciphertext: the iv is not fresh")
	}

	if _, _, err := EncryptOpenData("AAAA", "wxround", payload, now); !errors.Is(err, ErrOpenData) {
		t.Errorf("bad key: err = %v, want ErrOpenData", err)
	}
}

func FuzzDecryptOpenData(f *testing.F) {
	f.Add(sampleSessionKey, sampleData, sampleIV, sampleAppID)
	f.Add(sampleSessionKey, strings.ReplaceAll(sampleData, "+", " "), sampleIV, sampleAppID)
	f.Add(sampleSessionKey, sampleData[:64], sampleIV, "")
	f.Add("", "", "", "")
	f.Add(" ", "====", "\n", "wx")
	f.Fuzz(func(t *testing.T, key, data, iv, appid string) {
		d, err := DecryptOpenData(key, data, iv, appid)
		if err != nil {
			if !errors.Is(err, ErrOpenData) && !errors.Is(err, ErrWatermark) {
				t.Fatalf("untyped error %v", err)
			}
			return
		}
		if d.Watermark.AppID == "" || d.Watermark.AppID != appid {
			t.Fatalf("accepted watermark %q for appid %q", d.Watermark.AppID, appid)
		}
		if !json.Valid(d.Raw) {
			t.Fatalf("accepted non-JSON plaintext %q", d.Raw)
		}
	})
}

// mustKey returns a base64 session_key of 16 bytes b.
func mustKey(t *testing.T, b byte) string {
	t.Helper()
	return base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{b}, 16))
}

func mustB64(t *testing.T, s string) []byte {
	t.Helper()
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// pkcs7 pads b to whole AES blocks, independently of the code under test.
func pkcs7(b []byte) []byte {
	n := aes.BlockSize - len(b)%aes.BlockSize
	return append(append([]byte(nil), b...), bytes.Repeat([]byte{byte(n)}, n)...)
}

// encryptRaw encrypts whole blocks pt as they are, so tests can choose the
// padding.
func encryptRaw(t *testing.T, key string, pt []byte) (data, iv string) {
	t.Helper()
	block, err := aes.NewCipher(mustB64(t, key))
	if err != nil {
		t.Fatal(err)
	}
	ivb := bytes.Repeat([]byte{0x42}, aes.BlockSize)
	ct := make([]byte, len(pt))
	cipher.NewCBCEncrypter(block, ivb).CryptBlocks(ct, pt)
	return base64.StdEncoding.EncodeToString(ct), base64.StdEncoding.EncodeToString(ivb)
}
