# wxbridge. `make test` is the one test command (CI runs it via .ci/run).

FUNCTIONS := $(notdir $(patsubst %/main.go,%,$(wildcard functions/*/main.go)))
GOFLAGS_BUILD := -trimpath -tags lambda.norpc -ldflags="-s -w"
BUILD_DIR ?= build

.PHONY: all build dev test unit cfn-lint lint bench tools-dev tools-test deploy clean $(addprefix build-,$(FUNCTIONS))

all: test

## build: every function for Lambda (linux/arm64) into build/<function>/bootstrap
build: $(addprefix build-,$(FUNCTIONS))

GOBUILD := CGO_ENABLED=0 GOOS=linux GOARCH=arm64 go build $(GOFLAGS_BUILD)

$(addprefix build-,$(FUNCTIONS)): build-%:
	$(GOBUILD) -o $(BUILD_DIR)/$*/bootstrap ./functions/$*

# sam build calls build-<LogicalId> with ARTIFACTS_DIR (BuildMethod:
# makefile). Each function's logical ID names its directory here.
LoginFunction := login
OAuthCallbackFunction := oauth-callback
FollowEventFunction := follow-event
TokenRefresherFunction := token-refresher
SendWorkerFunction := send-worker
FollowerSyncFunction := follower-sync

build-%Function:
	@test -n "$($*Function)" || { echo "no functions/ directory known for $*Function"; exit 1; }
	$(GOBUILD) -o $(ARTIFACTS_DIR)/bootstrap ./functions/$($*Function)

## deploy: sam build, then sam deploy to the samconfig.toml environment ENV
## (default: dev; ENV=prod for prod). Needs the AWS SAM CLI and credentials.
ENV ?= default
deploy:
	@command -v sam >/dev/null || { echo "make deploy needs the AWS SAM CLI (sam), which is not installed:"; \
		echo "  https://docs.aws.amazon.com/serverless-application-model/latest/developerguide/install-sam-cli.html"; exit 1; }
	sam build --config-env $(ENV)
	sam deploy --config-env $(ENV)

## dev: the whole system on one machine (moto, the WeChat sandbox, every
## function in-process); console at http://127.0.0.1:8080/_dev/
dev: tools-dev
	go build -o $(BUILD_DIR)/devstack ./infra/devstack
	./$(BUILD_DIR)/devstack

## test: unit and integration tests (moto and the WeChat sandbox), template lint, build
test: tools-test unit cfn-lint build

# Each test binary that needs AWS starts its own moto_server (infra/devkit/awstest)
# unless AWS_ENDPOINT_URL points at one.
unit:
	go test -count=1 ./...

cfn-lint:
	cfn-lint template.yaml

## lint: formatting and vet
lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	go vet ./...

## bench: benchmarks with comparisons (login per person kind, against moto and the sandbox)
bench: tools-test
	go test -run '^$$' -bench . -benchmem -count 1 ./...

# The tools the tests need. Go modules come from the module proxy; moto and
# cfn-lint from pip, Chromium and its driver from Debian, when missing.
tools-dev:
	@command -v go >/dev/null || { echo "Go is required: https://go.dev/dl/"; exit 1; }
	@command -v moto_server >/dev/null || pip install 'moto[server]'
	go mod download

tools-test: tools-dev
	@command -v cfn-lint >/dev/null || pip install cfn-lint
	@command -v chromedriver >/dev/null || { echo "installing chromium and chromium-driver (the console's browser test)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; }

clean:
	rm -rf $(BUILD_DIR)
