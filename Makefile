# Deis data plane: see README.md. `make help` lists the targets.
SHELL := /bin/bash
DAEMONS := router logger logspout publisher builder controller agent deis deisctl etcd devplane
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X github.com/deis/dataplane/pkg/version.Version=$(VERSION)
GO ?= go
TEST_TIMEOUT ?= 14m
STATICCHECK ?= v0.8.2

.PHONY: help build test test-short setup bench run images lint fuzz clean

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

build: ## build every daemon into bin/<name> (static, CGO_ENABLED=0)
	@mkdir -p bin
	@for d in $(DAEMONS); do \
	  [ -d cmd/$$d ] || continue; \
	  CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/$$d ./cmd/$$d || exit 1; \
	done
	@echo "built: $(addprefix bin/,$(DAEMONS))"

setup: ## install and start what tests need (Docker engine, busybox, git, ssh)
	@bash scripts/setup.sh

# The packages with goroutines that share state, run again under the race
# detector (every package would not fit the time budget; e2e runs binaries;
# the agent runs under -race in-process inside the scheduler, controller and
# client tests, on the fake runtime, without its Docker-heavy tests).
RACE_PKGS := ./pkg/... ./router/... ./logger/... ./logspout/... ./publisher/... ./builder/... ./scheduler/... ./controller/... ./client/...

test: setup ## vet, every test in random order (real etcd, Docker, git, ssh), then the concurrent packages under -race; REQUIRE_DOCKER=1 fails instead of skipping
	$(GO) vet ./...
	$(GO) test -count=1 -shuffle=on -timeout $(TEST_TIMEOUT) -p 2 ./...
	$(GO) test -race -count=1 -shuffle=on -timeout $(TEST_TIMEOUT) -p 2 $(RACE_PKGS)

test-short: ## unit tests only: no setup, skips everything that needs etcd or Docker
	$(GO) test -short -count=1 -shuffle=on ./...

fuzz: ## run every fuzz target for FUZZTIME each (default 20s)
	@bash scripts/fuzz.sh $${FUZZTIME:-20s}

bench: build ## every component's benchmark against its peers; report in bench/out/report.md
	@bash bench/run.sh

run: build ## the whole platform on unprivileged ports (embedded etcd); Ctrl-C stops it; HOSTS=3 simulates 3 hosts; ARGS="--http-port 8000" passes flags
	@go run ./internal/stackimage || echo "make run: no stack image (is Docker running? scripts/setup.sh starts it); Dockerfile apps still build"
	@./bin/devplane $(if $(HOSTS),--hosts $(HOSTS)) $(ARGS)

images: build ## Docker images of every daemon (FROM scratch) for docker-compose.yml
	@bash scripts/images.sh

lint: ## go vet and staticcheck
	$(GO) vet ./...
	$(GO) run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK) ./...

clean: ## remove build output
	rm -rf bin bench/out
