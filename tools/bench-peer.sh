#!/usr/bin/env bash
# make bench-peer (issue 11), first part: Istio's real pilot-agent (built by
# make cluster-bins from the pinned istio) started with its status server
# against a fake Envoy admin, so its /healthz/ready answers as in a pod.
#
# pilot-agent's minimal setup (read from pilot/cmd/pilot-agent and
# pkg/istio-agent at the pin): `pilot-agent proxy sidecar` with
#   PROXY_CONFIG={"binaryPath": <a stand-in "envoy" that only sleeps>,
#                 "proxyAdminPort": <the admin stand-in>, "statusPort": <port>,
#                 "discoveryAddress": <anything; nothing listens>}
#   POD_NAME, POD_NAMESPACE, INSTANCE_IP
# and, in its working directory, ./var/run/secrets/istio/root-cert.pem (any
# cert: the SDS server refuses to start without it) and
# ./var/lib/istio/envoy/envoy_bootstrap_tmpl.json (from the istio module).
# Its CSR signing then fails in a loop (logged, harmless); the status server
# serves /healthz/ready from the admin's stats: 200 once LIVE and cds/lds
# update_success > 0.
#
# NOT YET HERE: the alternating A/B load (closed loop c=16, open loop 5k/s,
# >=5 rounds, medians and ratios). This script proves both peers answer and
# runs the existing single-agent load and hostile scenario for meshready.
set -euo pipefail
cd "$(dirname "$0")/.."
GO=${GO:-go}
CACHE=${MESHREADY_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/meshready}
PA="$CACHE/current/pilot-agent"
if [ ! -x "$PA" ]; then
	echo "bench-peer: no pilot-agent at $PA: building it with make cluster-bins (cold: ~20 min on 2 cores)" >&2
	make cluster-bins
fi
[ -x "$PA" ] || { echo "bench-peer: MISSING $PA after make cluster-bins" >&2; exit 1; }
ISTIO_DIR=$(cd integration && $GO list -m -f '{{.Dir}}' istio.io/istio)
WORK=$(mktemp -d /tmp/bench-peer.XXXXXX)
pids=()
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"' EXIT

mkdir -p "$WORK/var/run/secrets/istio" "$WORK/var/lib/istio/envoy"
openssl req -x509 -newkey rsa:2048 -nodes -keyout /dev/null -out "$WORK/var/run/secrets/istio/root-cert.pem" -days 2 -subj /CN=bench-peer 2>/dev/null
cp "$ISTIO_DIR/tools/packaging/common/envoy_bootstrap.json" "$WORK/var/lib/istio/envoy/envoy_bootstrap_tmpl.json"
printf '#!/bin/sh\nexec sleep 1000000\n' >"$WORK/envoy"
chmod +x "$WORK/envoy"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
ADMIN=$(free_port)
STATUS=$(free_port)
# The admin stand-in: the stats both agents read (LIVE, workers started,
# cds/lds received, nothing rejected or warming).
python3 - "$ADMIN" <<'PY' &
import http.server, sys
body = b"".join(l.encode() + b"\n" for l in [
    "server.state: 0", "listener_manager.workers_started: 1",
    "cluster_manager.cds.update_success: 1", "cluster_manager.cds.update_rejected: 0",
    "listener_manager.lds.update_success: 1", "listener_manager.lds.update_rejected: 0",
    "cluster_manager.warming_clusters: 0", "listener_manager.total_listeners_warming: 0"])
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(s):
        s.send_response(200); s.send_header("Content-Length", str(len(body))); s.end_headers(); s.wfile.write(body)
    def log_message(*a): pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
PY
pids+=($!)
(cd "$WORK" && POD_NAME=bench-1 POD_NAMESPACE=default INSTANCE_IP=127.0.0.1 \
	PROXY_CONFIG="{\"binaryPath\":\"$WORK/envoy\",\"proxyAdminPort\":$ADMIN,\"statusPort\":$STATUS,\"discoveryAddress\":\"127.0.0.1:1\"}" \
	exec "$PA" proxy sidecar >"$WORK/pilot-agent.log" 2>&1) &
pids+=($!)
for _ in $(seq 1 100); do
	code=$(curl -s -o /dev/null -m 1 -w '%{http_code}' "http://127.0.0.1:$STATUS/healthz/ready" || true)
	[ "$code" = 200 ] && break
	sleep 0.1
done
echo "bench-peer: pilot-agent /healthz/ready on :$STATUS = ${code:-none} (admin stand-in :$ADMIN)"
[ "${code:-}" = 200 ] || { tail -20 "$WORK/pilot-agent.log"; exit 1; }
echo "bench-peer: pilot-agent idle RSS $(awk '/VmRSS/ {printf "%.1f MiB", $2/1024}' /proc/"${pids[1]}"/status 2>/dev/null || echo '?')"
echo "bench-peer: the A/B alternation is not implemented yet; meshready alone (open loop 5k/s, then hostile):"
make build >/dev/null
$GO run ./internal/healthload -bin bin/meshready -rate 5000 -duration 10s -hostile 300 -probes 100
