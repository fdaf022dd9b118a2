#!/usr/bin/env bash
# `make image-test`: the binary taken out of the built images, run as PID 1.
#
# No container is started (podman cannot start one on our build machines):
# each image's filesystem is exported (podman create + podman export: nothing
# runs) and its binary runs as PID 1 of a new PID namespace (unshare --pid).
#
#   1. Dockerfile.base's minimal image: /meshready, run as
#        meshready run --sidecar=none --listen=127.0.0.1:PORT --drain-min=1s --drain-max=3s \
#          -- /bin/sh -c '<trap TERM: record the time, exit 3>'
#   2. the Go base (images/go), the way a container runs it: chrooted into the
#      image's filesystem as the image's USER, with the image's ENV, its
#      ENTRYPOINT (meshready run --) and a static Go app as CMD
#      (images/testdata/pid1app), configured through MESHREADY_* only.
#
# Each run: /health 200 once CMD runs (no sidecar), CMD is not PID 1 and the
# agent is; then SIGTERM to the agent: /health answers "503 draining" at once
# and before CMD sees SIGTERM, /health/live stays 200, CMD gets SIGTERM no
# sooner than drain-min and well before drain-max, the log shows drain start ->
# drain end -> SIGTERM to CMD -> CMD exited in that order, and the agent exits
# with CMD's code. Every wait has a deadline; the namespace is SIGKILLed on
# any failure. Needs root (PID namespaces, chroot).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=images/lib.sh
. images/lib.sh

DRAIN_MIN=1 # seconds
DRAIN_MAX=3
GRACE=5
P=$IMAGE_PREFIX

[ "$(id -u)" = 0 ] || die "needs root: PID namespaces (unshare --pid) and chroot"
need_cmds podman:podman unshare:util-linux curl:curl chroot:coreutils ss:iproute2
command -v go >/dev/null 2>&1 || die "go is missing (it builds the test app, images/testdata/pid1app)"

WORK=$(mktemp -d /tmp/meshready-image-test.XXXXXX)
KILL_PIDS=()
cleanup() {
	local p
	for p in "${KILL_PIDS[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
	rm -rf "$WORK"
}
trap cleanup EXIT

# extract IMAGE DIR: the image's filesystem, flattened, into DIR.
extract() {
	local cid
	mkdir -p "$2"
	cid=$(timeout 120 "$PODMAN" create --pull=never "$1" /none) || die "podman create $1 failed (is it built? make image)"
	if ! timeout 300 "$PODMAN" export "$cid" | tar -C "$2" -xf -; then
		"$PODMAN" rm -f "$cid" >/dev/null 2>&1 || true
		die "podman export $1 failed"
	fi
	"$PODMAN" rm -f "$cid" >/dev/null
}

# config IMAGE FORMAT: a field of the image's config.
config() { timeout 60 "$PODMAN" image inspect --format "$2" "$1"; }

expect_eq() { # WHAT GOT WANT
	[ "$2" = "$3" ] || die "$1: got $2, want $3"
}

free_port() {
	local p i
	for i in $(seq 1 50); do
		p=$((20000 + RANDOM % 20000))
		if ! ss -Hltn "sport = :$p" 2>/dev/null | grep -q .; then
			echo "$p"
			return
		fi
	done
	die "no free port found"
}

now() { date +%s.%N; }
# ge A B: A >= B for decimal seconds.
ge() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a >= b) }'; }
sub() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", a - b }'; }

# get URL: "CODE BODY" (one line), or "000 " when nothing answered in 1 s.
get() {
	local out
	out=$(curl -s --max-time 1 -w '\n%{http_code}' "$1" 2>/dev/null) || true
	[ -n "$out" ] || out=$'\n000'
	printf '%s %s' "${out##*$'\n'}" "$(printf '%s' "${out%$'\n'*}" | tr -d '\n')"
}

# pid1_run NAME PORT EVENTS WANT_CODE LOG CMD...: runs CMD (which starts the
# agent under unshare --pid --fork) in the background and checks the run.
# EVENTS is where the app writes "start ..." and "term <time>".
pid1_run() {
	local name=$1 port=$2 events=$3 want=$4 log=$5
	shift 5
	local base="http://127.0.0.1:$port" upid mpid="" deadline r t0 t503="" tterm code i
	say "[$name] starting: $*"
	"$@" >"$log" 2>&1 &
	upid=$!
	KILL_PIDS+=("$upid")

	# The agent: unshare's child, PID 1 in its namespace.
	deadline=$((SECONDS + 10))
	while [ -z "$mpid" ]; do
		mpid=$(cat "/proc/$upid/task/$upid/children" 2>/dev/null | awk '{print $1}') || true
		if [ -n "$mpid" ] && [ "$(cat "/proc/$mpid/comm" 2>/dev/null)" != meshready ]; then
			mpid="" # still chroot or setpriv, about to exec the agent
		fi
		kill -0 "$upid" 2>/dev/null || { cat "$log" >&2; die "[$name] the agent exited at start (log above)"; }
		[ $SECONDS -lt $deadline ] || { cat "$log" >&2; die "[$name] no meshready process under unshare after 10s"; }
		[ -n "$mpid" ] || sleep 0.05
	done
	KILL_PIDS+=("$mpid") # SIGKILL to a namespace's PID 1 ends everything in it
	expect_eq "[$name] the agent's PID in its namespace (NSpid)" \
		"$(awk '/^NSpid:/ {print $NF}' "/proc/$mpid/status")" 1

	# Ready: no sidecar, no --app-ready, so 200 once it serves.
	deadline=$((SECONDS + 10))
	until r=$(get "$base/health") && [ "${r%% *}" = 200 ]; do
		kill -0 "$mpid" 2>/dev/null || { cat "$log" >&2; die "[$name] the agent exited before /health answered 200 (log above)"; }
		[ $SECONDS -lt $deadline ] || { cat "$log" >&2; die "[$name] /health is not 200 after 10s: $r"; }
		sleep 0.1
	done
	deadline=$((SECONDS + 10))
	until grep -q '^start ' "$events" 2>/dev/null; do
		[ $SECONDS -lt $deadline ] || { cat "$log" >&2; die "[$name] CMD did not start within 10s"; }
		sleep 0.05
	done
	local app_pid
	app_pid=$(sed -n 's/^start .* pid=\([0-9]*\).*/\1/p' "$events")
	[ -n "$app_pid" ] && [ "$app_pid" != 1 ] || die "[$name] CMD's PID in the namespace is ${app_pid:-unknown}, want not 1"
	say "[$name] ready: agent host pid $mpid is PID 1 of its namespace, CMD is PID $app_pid there ($(sed -n 's/^start [^ ]* //p' "$events"))"

	# SIGTERM to the agent.
	local polls=0
	t0=$(now)
	kill -TERM "$mpid"
	deadline=$((SECONDS + DRAIN_MIN + 2))
	while :; do
		r=$(get "$base/health")
		polls=$((polls + 1))
		if [ "$r" = "503 draining" ]; then
			t503=$(now)
			break
		fi
		grep -q '^term ' "$events" && die "[$name] CMD got SIGTERM before /health answered 503 draining (last answer: $r)"
		[ $SECONDS -lt $deadline ] || die "[$name] /health did not answer \"503 draining\" after SIGTERM (last answer: $r)"
		sleep 0.02
	done
	grep -q '^term ' "$events" && die "[$name] CMD had SIGTERM already when /health first answered 503 draining"
	r=$(get "$base/health/live")
	expect_eq "[$name] /health/live while draining" "${r%% *}" 200

	# The agent's exit, with CMD's code.
	deadline=$((SECONDS + DRAIN_MAX + GRACE + 10))
	while kill -0 "$upid" 2>/dev/null; do
		[ $SECONDS -lt $deadline ] || { cat "$log" >&2; die "[$name] the agent did not exit within drain-max + grace + 10s"; }
		r=$(get "$base/health")
		[ "${r%% *}" = 200 ] && die "[$name] /health answered 200 again while draining"
		sleep 0.1
	done
	code=0
	wait "$upid" || code=$?
	KILL_PIDS=() # gone: never signal a reused pid
	grep -q '^term ' "$events" || { cat "$log" >&2; die "[$name] CMD never got SIGTERM (log above)"; }
	tterm=$(awk '/^term / {print $2}' "$events")
	ge "$tterm" "$t503" || die "[$name] CMD got SIGTERM at $tterm, before /health answered 503 draining at $t503"
	ge "$(sub "$tterm" "$t0")" "$DRAIN_MIN" || die "[$name] CMD got SIGTERM $(sub "$tterm" "$t0")s after the agent's, want >= drain-min ${DRAIN_MIN}s"
	ge "$DRAIN_MAX.5" "$(sub "$tterm" "$t0")" || die "[$name] CMD got SIGTERM $(sub "$tterm" "$t0")s after the agent's, want <= drain-max ${DRAIN_MAX}s"
	expect_eq "[$name] the agent's exit code (CMD's)" "$code" "$want"

	# The agent's own account, in order.
	local line=0 n want_msg
	for want_msg in 'CMD started' 'SIGTERM: draining' 'drain ended' "SIGTERM sent to CMD's process group" 'CMD exited'; do
		n=$(grep -n -m1 -F "$want_msg" "$log" | cut -d: -f1) || true
		[ -n "$n" ] || { cat "$log" >&2; die "[$name] the log has no \"$want_msg\" line (log above)"; }
		[ "$n" -gt "$line" ] || { cat "$log" >&2; die "[$name] the log has \"$want_msg\" out of order (log above)"; }
		line=$n
	done
	say "[$name] ok: 503 draining at poll $polls after SIGTERM ($(sub "$t503" "$t0")s, curl included), CMD's SIGTERM $(sub "$tterm" "$t0")s after (drain-min ${DRAIN_MIN}s), exit $code"
}

start=$SECONDS

# --- 1. Dockerfile.base: the minimal image and the check image ---------------
say "extracting $P:$TAG and $P-check:$TAG"
extract "$P:$TAG" "$WORK/min"
extract "$P-check:$TAG" "$WORK/check"
[ -x "$WORK/min/meshready" ] || die "$P:$TAG has no executable /meshready"
expect_eq "$P:$TAG's files" "$(cd "$WORK/min" && find . -mindepth 1 | sort | tr '\n' ' ')" "./meshready "
cmp -s "$WORK/min/meshready" "$WORK/check/usr/local/bin/meshready" || die "$P-check:$TAG's binary differs from $P:$TAG's"
if [ -x bin/meshready ]; then
	cmp -s "$WORK/min/meshready" bin/meshready || die "$P:$TAG's /meshready is not bin/meshready (rebuild: make image)"
fi
if command -v ldd >/dev/null 2>&1 && ldd "$WORK/min/meshready" >/dev/null 2>&1; then
	die "$P:$TAG's /meshready is dynamically linked"
fi
expect_eq "$P-check:$TAG's ENTRYPOINT" "$(config "$P-check:$TAG" '{{json .Config.Entrypoint}}')" '["/usr/local/bin/meshready","check"]'
expect_eq "$P-check:$TAG's USER" "$(config "$P-check:$TAG" '{{.Config.User}}')" '65532:65532'
say "image binary: $("$WORK/min/meshready" version)"

port=$(free_port)
events="$WORK/min-events"
pid1_run "$P:$TAG" "$port" "$events" 3 "$WORK/min.log" \
	unshare --pid --fork --mount-proc \
	"$WORK/min/meshready" run --sidecar=none --listen="127.0.0.1:$port" \
	--drain-min=${DRAIN_MIN}s --drain-max=${DRAIN_MAX}s --grace=${GRACE}s --termination-grace=30s \
	-- /bin/sh -c '
		trap "echo term \$(date +%s.%N) >>\"$0\"; exit 3" TERM
		echo "start $(date +%s.%N) pid=$$" >>"$0"
		while :; do sleep 0.1; done' "$events"

# --- 2. the Go base, as a container runs it ---------------------------------
say "extracting $P-go:$TAG"
root="$WORK/go"
extract "$P-go:$TAG" "$root"
entry=$(config "$P-go:$TAG" '{{json .Config.Entrypoint}}')
user=$(config "$P-go:$TAG" '{{.Config.User}}')
expect_eq "$P-go:$TAG's ENTRYPOINT" "$entry" '["/usr/local/bin/meshready","run","--"]'
expect_eq "$P-go:$TAG's USER" "$user" '65532:65532'
expect_eq "$P-go:$TAG's EXPOSE" "$(config "$P-go:$TAG" '{{range $p, $_ := .Config.ExposedPorts}}{{$p}} {{end}}')" '54321/tcp '
cmp -s "$root/usr/local/bin/meshready" "$WORK/min/meshready" || die "$P-go:$TAG's agent differs from $P:$TAG's"
mapfile -t image_env < <(config "$P-go:$TAG" '{{range .Config.Env}}{{println .}}{{end}}' | sed '/^$/d')
mapfile -t entrypoint < <(config "$P-go:$TAG" '{{range .Config.Entrypoint}}{{println .}}{{end}}' | sed '/^$/d')
# HOME as a container runtime sets it: the user's entry in the image's /etc/passwd.
home=$(awk -F: -v uid="${user%%:*}" '$3 == uid { print $6 }' "$root/etc/passwd")
[ -n "$home" ] && [ -d "$root$home" ] || die "$P-go:$TAG: no /etc/passwd entry with an existing home for uid ${user%%:*}"

# The app: static, as the Go base expects; copied into the exported tree.
CGO_ENABLED=0 timeout 300 go build -trimpath -buildvcs=false -o "$root/pid1app" ./images/testdata/pid1app ||
	die "go build ./images/testdata/pid1app failed"
mkdir -p "$root/proc"
port=$(free_port)
# The image's ENV, then what a pod spec would set (MESHREADY_* only: the
# ENTRYPOINT leaves no room for flags before --).
pid1_run "$P-go:$TAG" "$port" "$root/tmp/events" 4 "$WORK/go.log" \
	env -i "${image_env[@]}" \
	MESHREADY_SIDECAR=none MESHREADY_LISTEN="127.0.0.1:$port" \
	MESHREADY_DRAIN_MIN=${DRAIN_MIN}s MESHREADY_DRAIN_MAX=${DRAIN_MAX}s MESHREADY_GRACE=${GRACE}s \
	HOME="$home" \
	unshare --pid --fork --mount-proc="$root/proc" \
	chroot --userspec="$user" "$root" \
	"${entrypoint[@]}" /pid1app -events=/tmp/events -code=4 -limit=60s
grep -q " uid=65532 gid=65532 home=$home\$" "$root/tmp/events" ||
	die "$P-go:$TAG: CMD did not run as 65532:65532 with HOME=$home: $(head -n1 "$root/tmp/events")"

say "PASS: the images' binary runs as PID 1, drains before CMD's SIGTERM and exits with CMD's code ($((SECONDS - start))s)"
