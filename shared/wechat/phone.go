package wechat

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"
)

// Phone is the number a user verified with the mini program's
// getPhoneNumber button. It is personal data: String and LogValue mask it.
type Phone struct {
	// PhoneNumber has the country code for numbers outside mainland
	// China; PurePhoneNumber never has it; CountryCode is "86" for
	// mainland numbers.
	PhoneNumber     string
	PurePhoneNumber string
	CountryCode     string
	// WatermarkAppID is the mini program the number was verified in.
	WatermarkAppID     string
	WatermarkTimestamp int64
}

// E164 is the number as +<country code><number>, the form wxbridge keeps.
func (p Phone) E164() string { return "+" + p.CountryCode + p.PurePhoneNumber }

// MaskPhone shows only the last four digits of a number.
func MaskPhone(n string) string {
	if len(n) <= 4 {
		return "****"
	}
	head := ""
	if n[0] == '+' {
		head = "+"
	}
	return head + "****" + n[len(n)-4:]
}

// String masks the number.
func (p Phone) String() string { return "wechat.Phone{" + MaskPhone(p.E164()) + "}" }

// GoString masks the number.
func (p Phone) GoString() string { return p.String() }

// LogValue masks the number.
func (p Phone) LogValue() slog.Value { return slog.StringValue(MaskPhone(p.E164())) }

// PhoneNumber exchanges the code of a getPhoneNumber button tap in the mini
// program appid for the user's verified number
// (wxa/business/getuserphonenumber). A code works once, for 5 minutes.
func (c *Client) PhoneNumber(ctx context.Context, appid, code string) (Phone, error) {
	const api = "/wxa/business/getuserphonenumber"
	if code == "" {
		return Phone{}, fmt.Errorf("wechat %s: empty code", api)
	}
	body := struct {
		Code string `json:"code"`
	}{code}
	var out struct {
		PhoneInfo struct {
			PhoneNumber     string `json:"phoneNumber"`
			PurePhoneNumber string `json:"purePhoneNumber"`
			CountryCode     string `json:"countryCode"`
			Watermark       struct {
				AppID     string `json:"appid"`
				Timestamp int64  `json:"timestamp"`
			} `json:"watermark"`
		} `json:"phone_info"`
	}
	err := c.withToken(ctx, appid, nil, func(q url.Values) error { return c.postJSON(ctx, api, q, body, &out) })
	if err != nil {
		return Phone{}, err
	}
	pi := out.PhoneInfo
	if pi.PurePhoneNumber == "" || pi.CountryCode == "" {
		return Phone{}, &transportError{api: api, what: "answer without phone_info"}
	}
	return Phone{
		PhoneNumber: pi.PhoneNumber, PurePhoneNumber: pi.PurePhoneNumber, CountryCode: pi.CountryCode,
		WatermarkAppID: pi.Watermark.AppID, WatermarkTimestamp: pi.Watermark.Timestamp,
	}, nil
}
