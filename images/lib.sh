# Sourced by images/build.sh and images/test-image.sh (bash).

# The image names: $IMAGE_PREFIX (minimal: /meshready only), -check, -go,
# -python, -java; tagged with the version and "latest".
IMAGE_PREFIX=${IMAGE_PREFIX:-localhost/meshready}
VERSION=${VERSION:-$(git describe --tags --always --dirty 2>/dev/null || echo dev)}
COMMIT=${COMMIT:-$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)}
# An image tag allows [A-Za-z0-9_.-] only.
TAG=$(printf '%s' "$VERSION" | tr -c 'A-Za-z0-9_.-' '-')
PODMAN=${PODMAN:-podman}

say() { printf '%s: %s\n' "${0##*/}" "$*"; }
die() {
	printf '\n%s: FAIL: %s\n' "${0##*/}" "$*" >&2
	exit 1
}

# need_cmds CMD:PACKAGE...: installs the Debian packages of the missing commands
# when root (as `make deps` does), else fails naming them.
need_cmds() {
	local pair missing="" cmds=""
	for pair in "$@"; do
		if ! command -v "${pair%%:*}" >/dev/null 2>&1; then
			missing="$missing ${pair#*:}"
			cmds="$cmds ${pair%%:*}"
		fi
	done
	[ -z "$missing" ] && return 0
	if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
		say "installing$missing (missing:$cmds)"
		timeout 900 apt-get update -qq || die "apt-get update failed"
		# shellcheck disable=SC2086
		DEBIAN_FRONTEND=noninteractive timeout 900 apt-get install -y -qq $missing >/dev/null ||
			die "apt-get install$missing failed"
	else
		die "missing$cmds: install$missing (Debian packages), or run as root to have them installed"
	fi
}

# The timestamp every image layer and config gets: the last commit's time,
# so the same commit builds the same image digest.
source_date_epoch() {
	if [ -n "${SOURCE_DATE_EPOCH:-}" ]; then
		echo "$SOURCE_DATE_EPOCH"
	else
		git log -1 --format=%ct 2>/dev/null || echo 0
	fi
}
