#!/usr/bin/env bash
# Builds third-party tools the tests and benchmarks drive (KEDA's operator and
# metrics adapter, Prometheus's promtool) from their Go modules into a cache
# directory keyed by tool and version, and does nothing when they are already
# there. Like build-k8s.sh, each tool is built from a small generated wrapper
# module: `go install pkg@version` refuses a module whose go.mod has replace or
# exclude directives (KEDA's has both), so the wrapper requires the module and
# copies those directives, which makes the build resolve exactly the module
# graph upstream releases with.
#
# Usage: build-tools.sh [--cached] keda|promtool...   prints one bin dir per tool on
# stdout. With --cached nothing is built: exit code 3 when a tool is not in the cache.
set -euo pipefail

KEDA_VERSION="${KEDA_VERSION:-v2.21.0}"
PROMETHEUS_VERSION="${PROMETHEUS_VERSION:-v0.316.0}"
CACHE_ROOT="${WORKERFLEET_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/workerfleet}"

log() { printf '[tools-bin] %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

cached_only=""
if [[ "${1:-}" == "--cached" ]]; then cached_only=1; shift; fi
[[ $# -gt 0 ]] || die "usage: $0 [--cached] keda|promtool..."
not_cached() { log "$1 is not built in $2 (build it with: $0 $1)"; exit 3; }

work=""
cleanup() { [[ -z "$work" ]] || rm -rf "$work"; }
trap cleanup EXIT
export GOFLAGS="-mod=mod -buildvcs=false" CGO_ENABLED=0

# Prints the `replace` or `exclude` directives of a go.mod, one per line and
# without the keyword, whether written singly or in a ( ) block.
directives() {
  awk -v kw="$1" '
    { sub(/\/\/.*/, "") }
    $1 == kw && $2 == "(" { block = 1; next }
    block && $1 == ")" { block = 0; next }
    block && NF { print; next }
    $1 == kw && NF > 1 { $1 = ""; print }
  ' "$2"
}

# Creates a wrapper module in $work/$1 requiring $2@$3 with the module's own
# replace and exclude directives and go.sum. Prints the module's directory in
# the module cache.
wrapper_module() {
  local name="$1" module="$2" version="$3" dir="$work/$1"
  mkdir -p "$dir" && cd "$dir"
  go mod init "workerfleet.local/$name-wrapper" >/dev/null 2>&1
  go mod edit -require="$module@$version"
  local info; info="$(go mod download -json "$module@$version")" || die "go mod download $module@$version: $info"
  local moddir; moddir="$(sed -n 's/^\s*"Dir": "\(.*\)",$/\1/p' <<<"$info")"
  local modfile; modfile="$(sed -n 's/^\s*"GoMod": "\(.*\)",$/\1/p' <<<"$info")"
  [[ -d "$moddir" && -f "$modfile" ]] || die "go mod download $module@$version failed: $info"
  # A module that needs a newer Go than this one is only built with the
  # toolchain the environment approves; say so instead of Go's bare refusal.
  local need; need="$(sed -n 's/^go \([0-9.]*\).*/\1/p' "$modfile")"
  local have; have="$(go env GOVERSION)"; have="${have#go}"
  if [[ "$(printf '%s\n%s\n' "$need" "$have" | sort -V | tail -1)" != "$have" ]]; then
    die "$module@$version needs go >= $need but go is $have: export GOTOOLCHAIN=go1.27.3 and rerun"
  fi
  local old oldver arrow new newver
  while read -r old oldver arrow new newver; do
    if [[ "$oldver" == "=>" ]]; then newver="$new"; new="$arrow"; oldver=""; fi
    [[ "$new" == .* || "$new" == /* ]] && die "$module replaces $old with a local path ($new): pin it by hand"
    go mod edit -replace="$old${oldver:+@$oldver}=$new${newver:+@$newver}"
  done < <(directives replace "$modfile")
  local path ver
  while read -r path ver; do
    go mod edit -exclude="$path@$ver"
  done < <(directives exclude "$modfile")
  # The module's own checksums: its dependencies are verified against what
  # upstream committed rather than looked up one by one in the checksum database.
  cp "$moddir/go.sum" go.sum
  chmod u+w go.sum
  echo "$moddir"
}

build_keda() {
  local bin_dir="$CACHE_ROOT/keda/$KEDA_VERSION"
  local want=(keda keda-adapter crd/keda.sh_scaledobjects.yaml) missing=() f
  for f in "${want[@]}"; do [[ -e "$bin_dir/$f" ]] || missing+=("$f"); done
  if [[ ${#missing[@]} -eq 0 ]]; then
    log "keda cached in $bin_dir"
    echo "$bin_dir"
    return
  fi
  [[ -z "$cached_only" ]] || not_cached keda "$bin_dir"
  local start=$SECONDS moddir
  log "building keda $KEDA_VERSION into $bin_dir (cold build: about 11 minutes on 2 cores)"
  mkdir -p "$bin_dir"
  moddir="$(wrapper_module keda github.com/kedacore/keda/v2 "$KEDA_VERSION")"
  ( cd "$work/keda"
    # What KEDA's Makefile stamps into release binaries (VERSION is the tag without "v").
    local ldflags="-s -w -X=github.com/kedacore/keda/v2/version.Version=${KEDA_VERSION#v}"
    local out pkg
    for out in keda:operator keda-adapter:adapter; do
      pkg="${out#*:}"; out="${out%%:*}"
      [[ -x "$bin_dir/$out" ]] && continue
      log "go build $out (cmd/$pkg) $KEDA_VERSION"
      go build -trimpath -ldflags "$ldflags" -o "$bin_dir/$out.tmp" "github.com/kedacore/keda/v2/cmd/$pkg"
      mv "$bin_dir/$out.tmp" "$bin_dir/$out"
    done )
  # The CRDs, so a cluster can get them without knowing where the module cache is.
  rm -rf "$bin_dir/crd.tmp" && cp -r "$moddir/config/crd/bases" "$bin_dir/crd.tmp"
  chmod -R u+w "$bin_dir/crd.tmp" && rm -rf "$bin_dir/crd" && mv "$bin_dir/crd.tmp" "$bin_dir/crd"
  log "keda built in $((SECONDS - start))s"
  echo "$bin_dir"
}

build_promtool() {
  local bin_dir="$CACHE_ROOT/promtool/$PROMETHEUS_VERSION"
  if [[ -x "$bin_dir/promtool" ]]; then
    log "promtool cached in $bin_dir"
    echo "$bin_dir"
    return
  fi
  [[ -z "$cached_only" ]] || not_cached promtool "$bin_dir"
  local start=$SECONDS moddir
  log "building promtool $PROMETHEUS_VERSION into $bin_dir (cold build: about 9 minutes on 2 cores)"
  mkdir -p "$bin_dir"
  moddir="$(wrapper_module promtool github.com/prometheus/prometheus "$PROMETHEUS_VERSION")"
  ( cd "$work/promtool"
    # Prometheus's Go module v0.X.Y is its release 3.X.Y; the VERSION file says which.
    local release; release="$(cat "$moddir/VERSION")"
    log "go build promtool $PROMETHEUS_VERSION (Prometheus $release)"
    go build -trimpath -ldflags "-s -w -X github.com/prometheus/common/version.Version=$release" \
      -o "$bin_dir/promtool.tmp" github.com/prometheus/prometheus/cmd/promtool
    mv "$bin_dir/promtool.tmp" "$bin_dir/promtool" )
  log "promtool built in $((SECONDS - start))s"
  echo "$bin_dir"
}

for tool in "$@"; do
  case "$tool" in
    keda|promtool) ;;
    *) die "unknown tool '$tool' (known: keda, promtool)" ;;
  esac
done
for tool in "$@"; do
  [[ -n "$work" ]] || work="$(mktemp -d)"
  "build_$tool"
done
