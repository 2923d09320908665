# wxbridge. `make test` is the one test command (CI runs it via .ci/run).

FUNCTIONS := $(notdir $(patsubst %/main.go,%,$(wildcard functions/*/main.go)))
GOFLAGS_BUILD := -trimpath -tags lambda.norpc -ldflags="-s -w"
# Every go command here (and the ones tests run) compiles with -trimpath:
# the build cache is then keyed on the sources rather than on the checkout's
# directory, so a fresh clone reuses what an earlier run compiled.
export GOFLAGS := -trimpath $(GOFLAGS)
# make test's processes (the tests and the compiler) collect garbage a
# quarter as often: memory is plentiful, CPU is what make test is short of.
# Not for make bench, whose memory figures must be the defaults'.
test unit race sims js-test: export GOGC ?= 400
BUILD_DIR ?= build

.PHONY: all build dev test unit race sims cfn-lint js-test lint bench tools-dev tools-test deploy clean $(addprefix build-,$(FUNCTIONS))

all: test

## build: every function for Lambda (linux/arm64, or LAMBDA_ARCH=x86_64) into
## build/<function>/bootstrap, in one go build (which compiles what they share
## once, in parallel)
# LAMBDA_ARCH is template.yaml's Architecture parameter: make deploy sets it
# from the environment's parameter_overrides, and sam build's make (below)
# inherits it.
LAMBDA_ARCH ?= arm64
GOARCH_arm64 := arm64
GOARCH_x86_64 := amd64
GOARCH_LAMBDA := $(or $(GOARCH_$(LAMBDA_ARCH)),$(error LAMBDA_ARCH is "$(LAMBDA_ARCH)": template.yaml's Architecture is arm64 or x86_64))
GOBUILD := CGO_ENABLED=0 GOOS=linux GOARCH=$(GOARCH_LAMBDA) go build $(GOFLAGS_BUILD)

build:
	@rm -rf $(BUILD_DIR)/.bin && mkdir -p $(BUILD_DIR)/.bin
	$(GOBUILD) -o $(BUILD_DIR)/.bin/ $(addprefix ./functions/,$(FUNCTIONS))
	@for f in $(FUNCTIONS); do mkdir -p $(BUILD_DIR)/$$f && mv $(BUILD_DIR)/.bin/$$f $(BUILD_DIR)/$$f/bootstrap || exit 1; done; rmdir $(BUILD_DIR)/.bin

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
OutcomePublisherFunction := outcome-publisher

build-%Function:
	@test -n "$($*Function)" || { echo "no functions/ directory known for $*Function"; exit 1; }
	$(GOBUILD) -o $(ARTIFACTS_DIR)/bootstrap ./functions/$($*Function)

## deploy: check the samconfig.toml environment ENV (default: the dev stack;
## ENV=prod, ENV=china) against template.yaml, then sam build and sam deploy
## with it. The check (infra/deploycheck) needs neither sam nor AWS and names
## each required parameter left empty or at its <placeholder>; the rest needs
## the AWS SAM CLI and credentials (README, "Deploying").
ENV ?= default
deploy:
	@arch=$$(go run ./infra/deploycheck -env '$(ENV)' -print Architecture) || exit 1; \
	command -v sam >/dev/null || { echo "make deploy needs the AWS SAM CLI (sam), which is not installed:"; \
		echo "  https://docs.aws.amazon.com/serverless-application-model/latest/developerguide/install-sam-cli.html"; exit 1; }; \
	echo "LAMBDA_ARCH=$$arch sam build --config-env '$(ENV)' && sam deploy --config-env '$(ENV)'"; \
	LAMBDA_ARCH=$$arch sam build --config-env '$(ENV)' && sam deploy --config-env '$(ENV)'

## dev: the whole system on one machine (moto, the WeChat sandbox, every
## function in-process); console at http://127.0.0.1:8080/_dev/.
## PARAMS='PublicUrl=http://127.0.0.1:8080/wx H5Origins=…' sets template
## parameters as sam deploy --parameter-overrides does (docs/devstack.md).
dev: tools-dev
	go build -o $(BUILD_DIR)/devstack ./infra/devstack
	./$(BUILD_DIR)/devstack

# PARAMS reaches the devstack untouched by the shell: make exports it.
ifdef PARAMS
dev: export WXB_DEV_PARAMS = $(PARAMS)
endif

## test: unit and integration tests (moto and the WeChat sandbox), the
## packages with real concurrency under the race detector, template lint,
## build, the client kit; the five at once once the tools are there
test: tools-test
	@$(MAKE) --no-print-directory -j6 unit race sims cfn-lint build js-test

# The packages with real concurrency (goroutines racing against moto,
# bounded batches and worker pools, single-flight caches, the refresher's
# apps in parallel) run under the race detector, the rest without. The
# functions whose handlers run inside shared/queue's worker pool
# (send-worker, follow-event, follower-sync) and the token-refresher are
# raced; login, oauth-callback and outcome-publisher handle one request or
# batch at a time and share their concurrency with the shared packages
# raced here. -race costs these moto-bound tests about 40 % more CPU
# (176 against 133 CPU-seconds measured for this list), and make test must
# stay under 3 minutes on a 2-core machine.
RACE_PKGS := ./shared/identity/... ./shared/tokens/... ./shared/notify/... ./shared/queue/... ./shared/ddb/... \
	./shared/binding/... ./shared/idempotency/... ./shared/oauthstate/... ./infra/devkit/sandbox/... \
	./functions/send-worker/... ./functions/follow-event/... ./functions/follower-sync/... ./functions/token-refresher/...
RACE_LIST = $(call slowest_first,$(shell go list $(RACE_PKGS)))
UNIT_LIST = $(call slowest_first,$(filter-out $(RACE_LIST),$(shell go list ./...)))

# The packages whose tests take longest start first, so that they do not
# finish last, alone on the machine.
SLOWEST := wxbridge/infra/devstack wxbridge/functions/follower-sync/handler wxbridge/functions/token-refresher/handler \
	wxbridge/functions/send-worker/handler wxbridge/functions/follow-event/handler wxbridge/shared/identity wxbridge/infra/wxctl wxbridge/infra/lambdatest
slowest_first = $(filter $(SLOWEST),$(1)) $(filter-out $(SLOWEST),$(1))

# Test binaries run at once (go test -p): most of their time goes to
# waiting for moto, the sandbox and child processes, not to a CPU. Three
# per go test (six at once) keep both cores of a 2-core machine busy;
# more only adds contention.
TEST_P ?= 3

# Each test binary that needs AWS starts its own moto_server (infra/devkit/awstest)
# unless AWS_ENDPOINT_URL points at one. The whole-system sizes (the
# 25,000-follower backfill, bootstrap size and init time) are benchmarks:
# make bench. Test binaries are linked without DWARF and symbol tables
# ('-ldflags=-s -w'): about 40 % less link CPU, and stack traces and race
# reports still read the runtime's own tables.
unit:
	go test -count=1 -p $(TEST_P) '-ldflags=-s -w' $(UNIT_LIST)

race:
	CGO_ENABLED=1 go test -race -count=1 -p $(TEST_P) '-ldflags=-s -w' $(RACE_LIST)

# Simulations in packages the race target runs, which skip themselves under
# the detector (it doubles their CPU and watches no concurrency the
# packages' other tests do not): run here without it.
sims:
	go test -count=1 '-ldflags=-s -w' -run '^TestTokenDay$$' ./functions/token-refresher/handler

# The template deploys in the global partition and in the China regions
# (partition aws-cn), whose resource types and properties cfn-lint knows.
CFN_LINT_REGIONS := us-east-1 cn-north-1 cn-northwest-1
cfn-lint:
	cfn-lint --regions $(CFN_LINT_REGIONS) -- template.yaml docs/examples/outcome-subscriber.yaml

## js-test: the client kit (infra/clients/js): TypeScript from its lock
## file, dist/ checked against tsc's output, and node --test against a
## devstack the test builds and starts (README, "The client kit")
js-test:
	@command -v npm >/dev/null || { echo "js-test needs Node.js 20 and npm: https://nodejs.org/"; exit 1; }
	cd infra/clients/js && npm ci --prefer-offline --no-audit --no-fund --loglevel=error && npm test --silent

## lint: formatting and vet
lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	go vet ./...

## bench: benchmarks with comparisons and whole-system sizes (README, "Benchmarks")
bench: tools-test
	go test -run '^$$' -bench . -benchmem -count 1 ./...

# The tools the tests need. Go modules come from the module proxy; moto and
# cfn-lint from pip, Chromium and its driver, and a C compiler (the race
# detector needs cgo) from Debian, when missing.
tools-dev:
	@command -v go >/dev/null || { echo "Go is required: https://go.dev/dl/"; exit 1; }
	@command -v moto_server >/dev/null || pip install 'moto[server]'
	go mod download

tools-test: tools-dev
	@command -v cfn-lint >/dev/null || pip install cfn-lint
	@command -v chromedriver >/dev/null || { echo "installing chromium and chromium-driver (the console's browser test)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; }
	@command -v gcc >/dev/null || { echo "installing gcc (go test -race needs cgo)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq gcc libc6-dev >/dev/null; }

clean:
	rm -rf $(BUILD_DIR)
