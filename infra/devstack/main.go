// Command devstack runs the whole of wxbridge on one machine with no AWS and
// no WeChat account (make dev): moto plays DynamoDB, SQS and Secrets Manager
// with the resources template.yaml declares, the WeChat sandbox plays the
// platform, and every function runs in-process behind one HTTP listener,
// with its queues polled and its schedules kept. A console at /_dev/ drives
// it all by hand.
//
// Environment: WXB_DEV_ADDR (default 127.0.0.1:8080), AWS_ENDPOINT_URL (use
// a running moto instead of starting one), WXB_DEV_PUSH_MODE (safe,
// compatible or plaintext), WXB_DEV_PARAMS (template parameters as sam
// deploy --parameter-overrides takes them: make dev PARAMS=…). With
// WXB_DEV_MP_APPID/WXB_DEV_MP_SECRET and WXB_DEV_OA_APPID/WXB_DEV_OA_SECRET
// (and optionally WXB_DEV_OA_TOKEN, WXB_DEV_OA_AES_KEY) it talks to the real
// WeChat platform instead.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"wxbridge/shared/config"
	"wxbridge/shared/wechat/push"
)

func main() {
	start := time.Now()
	cfg, err := configFromEnv()
	if err != nil {
		fmt.Fprintln(os.Stderr, "devstack:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	s, err := Start(ctx, cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "devstack:", err)
		os.Exit(1)
	}
	fmt.Printf("\n  wxbridge devstack\n\n")
	fmt.Printf("  console   %s/_dev/\n", s.URL)
	fmt.Printf("  API       %s\n", s.APIURL)
	dc := s.devConfig()
	for _, a := range dc.Apps {
		if a.PushURL != "" {
			fmt.Printf("  push      %s   (official account %s%s)\n", a.PushURL, a.AppID, modeNote(a.PushMode))
		}
	}
	if s.SandboxURL != "" {
		fmt.Printf("  sandbox   %s   (WeChat, simulated)\n", s.SandboxURL)
	} else {
		fmt.Printf("  WeChat    the real platform\n")
	}
	fmt.Printf("  AWS       %s   (moto; region us-east-1, any credentials)\n", s.AWSURL)
	if len(cfg.Params) > 0 {
		fmt.Printf("  params    %s\n", describeParams(cfg.Params))
	}
	if p := cfg.Params["PublicUrl"]; p != "" && p != s.APIURL {
		fmt.Printf("            PublicUrl is not this listener: browsers (OAuth) are sent to %s, which must reach %s\n", p, s.APIURL)
	}
	fmt.Printf("  config    %s/_dev/config\n\n", s.URL)
	// What the AWS CLI (v1 reads AWS_DEFAULT_REGION only) and wxctl --dev
	// need, and nothing else.
	fmt.Printf("  AWS CLI   export AWS_ENDPOINT_URL=%s AWS_REGION=%s AWS_DEFAULT_REGION=%s\n", dc.AWSEndpointURL, dc.Region, dc.Region)
	fmt.Printf("            export AWS_ACCESS_KEY_ID=%s AWS_SECRET_ACCESS_KEY=%s\n", dc.AccessKeyID, dc.SecretAccessKey)
	fmt.Printf("  wxctl     export WXB_DEV=%s   (or wxctl --dev %s …; wxctl doctor checks it all)\n\n", s.URL, s.URL)
	fmt.Printf("ready in %s: open %s/_dev/ (Ctrl-C stops everything)\n", time.Since(start).Round(time.Millisecond), s.URL)
	<-ctx.Done()
	fmt.Println("\nstopping…")
	s.Close()
}

// modeNote is ", <mode> mode" for a sandbox push mode, "" for none.
func modeNote(m push.Mode) string {
	if m == "" {
		return ""
	}
	return ", " + string(m) + " mode"
}

func configFromEnv() (Config, error) {
	cfg := Config{
		Addr:        os.Getenv("WXB_DEV_ADDR"),
		AWSEndpoint: os.Getenv("AWS_ENDPOINT_URL"),
		Logs:        os.Stdout,
	}
	mode, err := push.ParseMode(os.Getenv("WXB_DEV_PUSH_MODE"))
	if err != nil {
		return Config{}, err
	}
	if os.Getenv("WXB_DEV_PUSH_MODE") != "" {
		cfg.PushMode = mode
	}
	if cfg.Params, err = devParams(os.Getenv("WXB_DEV_PARAMS")); err != nil {
		return Config{}, fmt.Errorf("WXB_DEV_PARAMS (make dev PARAMS=…): %w", err)
	}
	if os.Getenv("WXB_DEV_MP_APPID") != "" || os.Getenv("WXB_DEV_OA_APPID") != "" {
		real := &config.Config{
			MiniProgram: config.App{AppID: os.Getenv("WXB_DEV_MP_APPID"), Secret: os.Getenv("WXB_DEV_MP_SECRET")},
			OfficialAccount: config.OfficialAccount{
				App:            config.App{AppID: os.Getenv("WXB_DEV_OA_APPID"), Secret: os.Getenv("WXB_DEV_OA_SECRET")},
				Token:          os.Getenv("WXB_DEV_OA_TOKEN"),
				EncodingAESKey: os.Getenv("WXB_DEV_OA_AES_KEY"),
			},
		}
		if err := real.Check(config.NeedMiniProgram, config.NeedOfficialAccount); err != nil {
			return Config{}, fmt.Errorf("real WeChat mode: %w", err)
		}
		cfg.Real = real
	}
	return cfg, nil
}
