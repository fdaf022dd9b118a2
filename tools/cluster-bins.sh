#!/usr/bin/env bash
# make cluster-bins: the real control plane's binaries, built once into a cache
# outside the repo and rebuilt only when a version changes.
#
#   kube-apiserver, kube-controller-manager, kube-scheduler, kubectl  k8s.io/kubernetes (tools/cluster/go.mod)
#   pilot-discovery, pilot-agent                                      istio.io/istio at integration/go.mod's pin
#   prometheus                                                        github.com/prometheus/prometheus (tools/prometheus/go.mod)
#   etcd                                                              Debian's etcd-server
#
# Cache: $MESHREADY_CACHE (default ~/.cache/meshready)/bin/<name>-<version>-<go>.
# Prints the directory holding current links to every binary as its last line
# when run with --print-dir.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
GO=${GO:-go}
CACHE=${MESHREADY_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/meshready}
GOV=$($GO env GOVERSION)
K8S=$(awk '$1=="require" && $2=="k8s.io/kubernetes" {print $3}' tools/cluster/go.mod)
ISTIO=$(awk '$1=="istio.io/istio" {print $2; exit}' integration/go.mod)
OUT="$CACHE/bin"
CUR="$CACHE/current"
mkdir -p "$OUT" "$CUR"

say() { printf 'cluster-bins: %s\n' "$*" >&2; }
t0=$(date +%s)

# build NAME VERSION DIR PKG [LDFLAGS]: go build PKG in module DIR unless cached.
build() {
	local name=$1 ver=$2 dir=$3 pkg=$4 ldflags=${5:-}
	local dst="$OUT/$name-$ver-$GOV"
	if [ ! -x "$dst" ]; then
		local s
		s=$(date +%s)
		say "building $name $ver with $GOV (first time only; cold, this takes minutes on 2 cores)…"
		(cd "$dir" && $GO build -buildvcs=false -ldflags "-s -w $ldflags" -o "$dst.tmp" "$pkg")
		mv "$dst.tmp" "$dst"
		say "built $name in $(($(date +%s) - s)) s → $dst"
	fi
	ln -sf "$dst" "$CUR/$name"
}

# Debian packages, installed when missing and we are root; loud otherwise.
debian() {
	local cmd=$1 pkg=$2 path=$3
	if [ ! -x "$path" ]; then
		if [ "$(id -u)" = 0 ]; then
			local s
			s=$(date +%s)
			say "installing Debian's $pkg (for $cmd)…"
			apt-get update -qq >/dev/null
			DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$pkg" >/dev/null
			say "installed $pkg in $(($(date +%s) - s)) s"
		else
			say "MISSING: $path (Debian package $pkg): install it as root (apt-get install $pkg)"
			exit 1
		fi
	fi
	ln -sf "$path" "$CUR/$cmd"
}

debian etcd etcd-server /usr/bin/etcd
debian ip iproute2 /usr/sbin/ip
debian unshare util-linux /usr/bin/unshare

# kubectl and the apiserver parse /version: stamp it (an unstamped build says v0.0.0-master+$Format:%H$).
minor=$(echo "$K8S" | cut -d. -f2)
stamp=""
for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
	stamp="$stamp -X $p.gitVersion=$K8S -X $p.gitMajor=1 -X $p.gitMinor=$minor -X $p.gitTreeState=clean"
done
for c in kube-apiserver kube-controller-manager kube-scheduler kubectl; do
	build "$c" "$K8S" tools/cluster "k8s.io/kubernetes/cmd/$c" "$stamp"
done
# Prometheus from source: Debian's package leaves kubernetes_sd_configs out.
PROM=$(awk '$1=="github.com/prometheus/prometheus" {print $2; exit}' tools/prometheus/go.mod)
# Its module tags v0.3MM.P are Prometheus 3.MM.P.
pv=${PROM#v0.}
build prometheus "$PROM" tools/prometheus github.com/prometheus/prometheus/cmd/prometheus \
	"-X github.com/prometheus/common/version.Version=3.$((${pv%%.*} - 300)).${pv#*.}"
for c in pilot-discovery pilot-agent; do
	build "$c" "$ISTIO" integration "istio.io/istio/pilot/cmd/$c"
done

# Istio's CRDs, from the same pinned module (the harness applies them before istiod starts).
crds="$OUT/istio-crds-$ISTIO.yaml"
if [ ! -s "$crds" ]; then
	dir=$(cd integration && $GO list -m -f '{{.Dir}}' istio.io/istio)
	cp "$dir/manifests/charts/base/files/crd-all.gen.yaml" "$crds.tmp" && mv "$crds.tmp" "$crds"
fi
ln -sf "$crds" "$CUR/istio-crds.yaml"

say "ready in $(($(date +%s) - t0)) s: $CUR ($(ls "$CUR" | tr '\n' ' '))"
if [ "${1:-}" = --print-dir ]; then echo "$CUR"; fi
