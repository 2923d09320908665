// Package wechat is wxbridge's typed edge to the WeChat platform: the server
// APIs of mini programs and official accounts, and the decryption of the
// open data a mini program hands to its server.
//
// Every answer is typed here, once. A successful call returns Go values
// (Session, AccessToken, ...). A failed one returns an error that ClassOf
// sorts into a Class: transient, quota, token, code, user_state, sender,
// config or unknown. Code above this package branches on the class, never on
// errcode numbers or message text; *Error still carries the API path, the
// errcode, the message and the rid that platform support asks for, so logs
// keep them.
//
// Errors never contain the request URL: its query carries the app secret,
// access tokens and login codes.
package wechat
