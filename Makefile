# meshready — see README.md. Every target works on a fresh Debian machine with Go.
GO       ?= go
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT   ?= $(shell git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
LDFLAGS  := -s -w -X main.version=$(VERSION) -X main.commit=$(COMMIT)
BIN      := bin/meshready
RELEASE_BIN := bin/meshrelease
FUZZTIME ?= 10s
# Packages with fuzz targets; `make fuzz` runs each target for $(FUZZTIME).
FUZZ_PKGS := ./envoyadmin ./probe ./pilotclient ./lint ./analysis

.PHONY: all generate generate-check build build-meshrelease lint-examples agent-deps test deps fmt-check vet unit bench fuzz run clean size loadtest bench-peer integration demo cluster-bins

all: build

# The Release API's generated parts (api/v1alpha1): deepcopy and the CRD in
# config/crd/bases, by controller-gen pinned in tools/controller-gen.
# generate-check fails when the committed files are stale (CI).
CONTROLLER_GEN := $(GO) run -modfile=tools/controller-gen/go.mod sigs.k8s.io/controller-tools/cmd/controller-gen
generate:
	$(CONTROLLER_GEN) object paths=./api/...
	$(CONTROLLER_GEN) crd paths=./api/... output:crd:artifacts:config=config/crd/bases

generate-check: generate
	@git diff --exit-code -- api/v1alpha1/zz_generated.deepcopy.go config/crd/bases || \
	  { echo "generated files are stale: run make generate and commit"; exit 1; }

build:
	CGO_ENABLED=0 $(GO) build -trimpath -buildvcs=false -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/meshready

# The release CLI (DESIGN.md part two): its own binary, so the agent's stays
# small (Kubernetes and Istio types are linked here only).
build-meshrelease:
	CGO_ENABLED=0 $(GO) build -trimpath -buildvcs=false -ldflags "$(LDFLAGS)" -o $(RELEASE_BIN) ./cmd/meshrelease

# The onboarding lint on the repo's own Kubernetes examples: what a team
# copies must pass (CI runs it after make test).
lint-examples: agent-deps build-meshrelease
	$(RELEASE_BIN) lint -f images/k8s

# bin/meshready links no Kubernetes or Istio package (meshrelease does; a
# stray import would more than double the agent). Also a test in
# cmd/meshrelease.
agent-deps:
	@bad=$$($(GO) list -deps ./cmd/meshready | grep -E '^(k8s\.io|istio\.io|sigs\.k8s\.io)/' || true); \
	if [ -n "$$bad" ]; then echo "cmd/meshready links Kubernetes/Istio packages:"; echo "$$bad" | head; exit 1; fi; \
	echo "cmd/meshready links no k8s.io, sigs.k8s.io or istio.io package"

# What the tests need from Debian: unshare (util-linux) for the PID-1 tests,
# ps (procps). Installed only when missing, and only when we are root.
deps:
	@missing=""; \
	command -v unshare >/dev/null 2>&1 || missing="$$missing util-linux"; \
	command -v ps >/dev/null 2>&1 || missing="$$missing procps"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	  else echo "WARNING: missing$$missing (install them; the PID-1 tests will skip loudly)"; fi; \
	fi

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet ./...

unit:
	$(GO) test -race -count=1 ./...

test: deps fmt-check vet unit

bench:
	$(GO) test -run='^$$' -bench=. -benchmem ./...

fuzz:
	@set -e; for pkg in $(FUZZ_PKGS); do \
	  for t in $$($(GO) test -list='^Fuzz' $$pkg | grep '^Fuzz'); do \
	    echo "== $$pkg $$t ($(FUZZTIME))"; \
	    $(GO) test -run='^$$' -fuzz="^$$t$$" -fuzztime=$(FUZZTIME) -fuzzminimizetime=2s $$pkg; \
	  done; \
	done

size: build
	@ls -l $(BIN) | awk '{printf "%s: %.2f MiB\n", $$9, $$5/1048576}'

# The local mesh on a real control plane, narrated (integration/cmd/clusterdemo):
# etcd, kube-apiserver, kube-controller-manager, kube-scheduler, istiod and
# Prometheus in a private network namespace, a kubelet stand-in, greeter
# Deployments under `meshready run` with a sidecar stand-in, proxyless gRPC
# callers: one pod's life, the start-up race, then the Deployment
# controller's rolling restart naive vs meshready under load. About two
# minutes once cluster-bins is built; exits non-zero if meshready loses a
# call. DEMO_FLAGS: -lag 0s, -rate N, -linger 60s, -v.
demo: cluster-bins
	cd integration && $(GO) run ./cmd/clusterdemo $(DEMO_FLAGS)

# The real control plane's binaries (kube-apiserver, kube-controller-manager,
# kube-scheduler, kubectl from k8s.io/kubernetes; pilot-discovery and
# pilot-agent from the pinned istio; Debian's etcd and prometheus), built once
# into ~/.cache/meshready (MESHREADY_CACHE) keyed by version. Cold: ~20 min on
# 2 cores, narrated; warm: a second.
cluster-bins:
	@tools/cluster-bins.sh

# The agent alone with local defaults. With no Envoy on
# 127.0.0.1:15000 it says why it is not ready, then serves :54321 (Ctrl-C stops).
run: build
	@$(BIN) check || echo "(not ready, as expected without a sidecar on 127.0.0.1:15000; serving anyway, Ctrl-C stops)"
	$(BIN) serve

clean:
	rm -rf bin

# The README's /health latency and RSS figures: the built agent at 5k req/s,
# agent and load generator on one core each.
loadtest: build
	$(GO) run ./internal/healthload -bin $(BIN) -rate 5000 -duration 10s -pin

# The local mesh on the real control plane (cluster-bins), the 200-agent load
# on the real istiod, and the scenarios that need Pilot's internals (istiod's
# discovery server in-process). Its own module: istio's dependency graph is
# ~700 MB. Without -race: the in-process Pilot is too slow under the race
# detector (integration/README.md).
integration: cluster-bins
	cd integration && MESHREADY_REQUIRE_CLUSTER=$${MESHREADY_REQUIRE_CLUSTER:-1} $(GO) test -count=1 -timeout 45m ./...

.PHONY: image image-test

# Base images with podman (installed when missing and root): Dockerfile.base and
# images/*/Dockerfile. Those whose FROM needs a registry build only when it answers
# (REGISTRY=auto|1|0; images/README.md).
image: build
	VERSION=$(VERSION) COMMIT=$(COMMIT) images/build.sh

# The binary taken out of the images, run as PID 1 in a PID namespace, drained by
# SIGTERM (root).
image-test: image
	VERSION=$(VERSION) COMMIT=$(COMMIT) images/test-image.sh

# Istio's real pilot-agent beside meshready against one Envoy admin stand-in
# (issue 11; tools/bench-peer.sh says what it does and does not do yet).
bench-peer:
	@tools/bench-peer.sh
