#!/usr/bin/env bash
# `make image`: builds Dockerfile.base and images/*/Dockerfile with podman
# (Debian's package; installed when missing and root). See images/README.md.
#
# Built on every machine (FROM scratch and local stages, no RUN step, no
# registry): the minimal image and the check image from bin/meshready
# (`make build`), and the Go base. Built only where a registry answers: the
# Python and Java bases (FROM a registry image, RUN useradd), the Go base with
# a CA bundle, and the agent built from source in the pinned Go image.
#
# Environment:
#   IMAGE_PREFIX  [localhost/meshready] names: PREFIX, PREFIX-check, PREFIX-go, PREFIX-python, PREFIX-java
#   VERSION, COMMIT  [git describe / rev-parse] stamped in labels; VERSION is also the tag (and "latest")
#   REGISTRY      [auto] auto: build the registry images when their base images pull, else skip
#                 them with a message; 1: they must build (CI with a registry); 0: don't try
#   SOURCE_DATE_EPOCH [last commit's time] every layer's and config's timestamp (same commit, same digest)
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=images/lib.sh
. images/lib.sh

REGISTRY=${REGISTRY:-auto}
case $REGISTRY in auto | 0 | 1) ;; *) die "REGISTRY must be auto, 0 or 1 but got \"$REGISTRY\"" ;; esac
# RUN steps (in the registry images only) run chroot-isolated: podman's OCI
# runtime cannot start containers on every build machine (on ours crun refuses
# with "cgroups in hybrid mode not supported"), chroot isolation can.
export BUILDAH_ISOLATION=${BUILDAH_ISOLATION:-chroot}

need_cmds podman:podman
[ -x bin/meshready ] || die "bin/meshready is missing: run make build first (make image does)"
if command -v ldd >/dev/null 2>&1 && ldd bin/meshready >/dev/null 2>&1; then
	die "bin/meshready is dynamically linked; FROM-scratch images need the static build (make build: CGO_ENABLED=0)"
fi

SDE=$(source_date_epoch)
P=$IMAGE_PREFIX
LOG=$(mktemp)
trap 'rm -f "$LOG"' EXIT
# --no-cache: buildah 1.28's layer cache keys ignore build-arg values and
# --timestamp (a cached LABEL layer keeps another build's version). Not
# --layers=false instead: then a stage that is only `FROM image` makes an
# intermediate image that is that image, removed at the end, tags and all.
common=(--no-cache --timestamp="$SDE" --build-arg VERSION="$VERSION" --build-arg COMMIT="$COMMIT")
built=()
skipped=()
declare -A unavailable=()

# build REF HOW PODMAN-BUILD-ARGS...: REF is the image's first tag, HOW says
# which Dockerfile and target.
build() {
	local ref=$1 how=$2 start=$SECONDS
	shift 2
	if ! timeout 1800 "$PODMAN" build "${common[@]}" "$@" >"$LOG" 2>&1; then
		tail -n 30 "$LOG" >&2
		die "podman build of $ref ($how) failed (last lines above): podman build ${common[*]} $*"
	fi
	say "built $ref ($how) in $((SECONDS - start))s"
	built+=("$ref")
}

# arg_default FILE NAME: the default of `ARG NAME=...` in a Dockerfile, the
# one place each base image is pinned.
arg_default() {
	sed -n "s/^ARG $2=//p" "$1" | head -n 1
}

# registry_ok WHAT IMAGE...: whether the images WHAT needs from a registry are
# here or pull; REGISTRY decides what a failure means.
registry_ok() {
	local what=$1 img err
	shift
	if [ "$REGISTRY" = 0 ]; then
		skipped+=("$what (REGISTRY=0)")
		return 1
	fi
	for img in "$@"; do
		"$PODMAN" image exists "$img" && continue
		err=${unavailable[$img]:-}
		if [ -z "$err" ]; then
			say "pulling $img for $what"
			if ! err=$(timeout 600 "$PODMAN" pull -q "$img" 2>&1 >/dev/null); then
				err=$(printf '%s\n' "$err" | grep -m1 -i 'error' || printf '%s\n' "$err" | tail -n 1)
				unavailable[$img]=${err:-pull failed}
			else
				err=""
			fi
		fi
		if [ -n "$err" ]; then
			if [ "$REGISTRY" = 1 ]; then
				die "$what needs $img from a registry and REGISTRY=1, but the pull failed: $err"
			fi
			say "SKIP $what: it needs $img from a registry, and the pull failed: $err"
			say "     (builds where a registry answers: make image REGISTRY=1)"
			skipped+=("$what (needs $img)")
			return 1
		fi
	done
}

say "version $VERSION (tag $TAG), commit $COMMIT, timestamp $SDE, prefix $P"

# --- here: no registry, no RUN ------------------------------------------------
build "$P:$TAG" "Dockerfile.base --target meshready" --pull=never \
	-f Dockerfile.base --target meshready -t "$P:$TAG" -t "$P:latest" .
build "$P-check:$TAG" "Dockerfile.base, default target" --pull=never \
	-f Dockerfile.base -t "$P-check:$TAG" -t "$P-check:latest" .
build "$P-go:$TAG" "images/go" --pull=never --build-arg MESHREADY_IMAGE="$P:$TAG" \
	-f images/go/Dockerfile -t "$P-go:$TAG" -t "$P-go:latest" images/go

# --- where a registry answers -------------------------------------------------
go_image=$(arg_default Dockerfile.base GO_IMAGE)
if registry_ok "$P-python (images/python)" "$(arg_default images/python/Dockerfile PYTHON_IMAGE)"; then
	build "$P-python:$TAG" "images/python" --pull=never --build-arg MESHREADY_IMAGE="$P:$TAG" \
		-f images/python/Dockerfile -t "$P-python:$TAG" -t "$P-python:latest" images/python
fi
if registry_ok "$P-java (images/java)" "$(arg_default images/java/Dockerfile JAVA_IMAGE)"; then
	build "$P-java:$TAG" "images/java" --pull=never --build-arg MESHREADY_IMAGE="$P:$TAG" \
		-f images/java/Dockerfile -t "$P-java:$TAG" -t "$P-java:latest" images/java
fi
if registry_ok "$P-go-ca-certificates (images/go --target go-ca-certificates)" "$(arg_default images/go/Dockerfile CA_CERTS_IMAGE)"; then
	build "$P-go-ca-certificates:$TAG" "images/go --target go-ca-certificates" --pull=never \
		--build-arg MESHREADY_IMAGE="$P:$TAG" --target go-ca-certificates \
		-f images/go/Dockerfile -t "$P-go-ca-certificates:$TAG" -t "$P-go-ca-certificates:latest" images/go
fi
if registry_ok "$P-from-source (Dockerfile.base --target meshready-source)" "$go_image"; then
	build "$P-from-source:$TAG" "Dockerfile.base --target meshready-source" --pull=never \
		-f Dockerfile.base --target meshready-source -t "$P-from-source:$TAG" .
	# The same Go release, flags, version and commit make the same bytes.
	cid=$(timeout 120 "$PODMAN" create "$P-from-source:$TAG" /meshready)
	if timeout 120 "$PODMAN" export "$cid" | tar -xOf - meshready | cmp -s - bin/meshready; then
		say "reproducible: the binary built in $go_image is byte-identical to bin/meshready"
	else
		say "WARNING: the binary built in $go_image differs from bin/meshready (another Go release, or other flags?)"
	fi
	"$PODMAN" rm -f "$cid" >/dev/null
fi

echo
say "built (size, image id):"
for ref in "${built[@]}"; do
	"$PODMAN" image exists "$ref" || die "$ref was built but is gone"
	printf '  %-50s %s\n' "$ref" "$("$PODMAN" image inspect --format '{{.Size}} {{.Id}}' "$ref" | awk '{printf "%.1f MiB  %.12s", $1/1048576, $2}')"
done
if [ ${#skipped[@]} -gt 0 ]; then
	say "skipped (they need a registry; see images/README.md):"
	for s in "${skipped[@]}"; do echo "  $s"; done
fi
