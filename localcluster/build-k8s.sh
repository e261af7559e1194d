#!/usr/bin/env bash
# Builds the pinned Kubernetes control-plane binaries, etcd and helm from their
# Go modules into a cache directory keyed by version, and does nothing when
# they are already there. k8s.io/kubernetes cannot be `go install`ed (its
# go.mod replaces its staging modules with relative paths), so each is built
# from a small generated wrapper module that pins the published v0.x of every
# staging module instead.
set -euo pipefail

K8S_VERSION="${K8S_VERSION:-v1.36.3}"
ETCD_VERSION="${ETCD_VERSION:-v3.6.8}"
HELM_VERSION="${HELM_VERSION:-v3.22.0}"
CACHE_ROOT="${WORKERFLEET_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/workerfleet}"
BIN_DIR="$CACHE_ROOT/k8s/$K8S_VERSION"
K8S_COMPONENTS=(kube-apiserver kube-controller-manager kube-scheduler kubectl)

log() { printf '[k8s-bin] %s\n' "$*" >&2; }

missing=()
for bin in "${K8S_COMPONENTS[@]}" etcd helm; do
  [[ -x "$BIN_DIR/$bin" ]] || missing+=("$bin")
done
if [[ ${#missing[@]} -eq 0 ]]; then
  log "cached in $BIN_DIR"
  echo "$BIN_DIR"
  exit 0
fi
log "building ${missing[*]} into $BIN_DIR (cold build: tens of minutes on 2 cores)"
mkdir -p "$BIN_DIR"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
export GOFLAGS="-mod=mod -buildvcs=false" CGO_ENABLED=0

build_kubernetes() {
  local dir="$work/kubernetes" minor="v0.${K8S_VERSION#v1.}"
  mkdir -p "$dir"
  ( cd "$dir"
    go mod init workerfleet.local/k8s-wrapper >/dev/null 2>&1
    go mod edit -require="k8s.io/kubernetes@$K8S_VERSION"
    go mod download -json "k8s.io/kubernetes@$K8S_VERSION" >/dev/null
    local modfile; modfile="$(go env GOMODCACHE)/cache/download/k8s.io/kubernetes/@v/$K8S_VERSION.mod"
    # Every staging module kubernetes replaces locally, pinned to its published twin.
    for staging in $(sed -n 's#^\s*\(k8s.io/[a-z0-9-]*\) => ./staging/.*#\1#p' "$modfile"); do
      go mod edit -replace="$staging=$staging@$minor"
    done
    for component in "${K8S_COMPONENTS[@]}"; do
      [[ -x "$BIN_DIR/$component" ]] && continue
      log "go build $component $K8S_VERSION"
      go build -trimpath -ldflags "-s -w -X k8s.io/component-base/version.gitVersion=$K8S_VERSION -X k8s.io/client-go/pkg/version.gitVersion=$K8S_VERSION" \
        -o "$BIN_DIR/$component.tmp" "k8s.io/kubernetes/cmd/$component"
      mv "$BIN_DIR/$component.tmp" "$BIN_DIR/$component"
    done )
}

build_etcd() {
  [[ -x "$BIN_DIR/etcd" ]] && return
  local dir="$work/etcd"
  mkdir -p "$dir"
  ( cd "$dir"
    go mod init workerfleet.local/etcd-wrapper >/dev/null 2>&1
    go mod edit -require="go.etcd.io/etcd/server/v3@$ETCD_VERSION"
    # The server module replaces its siblings with relative paths; pin them.
    for sibling in api/v3 client/pkg/v3 client/v3 pkg/v3; do
      go mod edit -replace="go.etcd.io/etcd/$sibling=go.etcd.io/etcd/$sibling@$ETCD_VERSION"
    done
    log "go build etcd $ETCD_VERSION"
    go build -trimpath -ldflags "-s -w" -o "$BIN_DIR/etcd.tmp" go.etcd.io/etcd/server/v3
    mv "$BIN_DIR/etcd.tmp" "$BIN_DIR/etcd" )
}

build_helm() {
  [[ -x "$BIN_DIR/helm" ]] && return
  log "go install helm $HELM_VERSION"
  # Without these, helm reports version "v3.x" and assumes Kubernetes v1.20 for
  # `helm template`, refusing charts that require a newer kubeVersion.
  local minor="${K8S_VERSION#v1.}"; minor="${minor%%.*}"
  local ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
  ldflags+=" -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$minor"
  ldflags+=" -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=$minor"
  GOBIN="$work/gobin" GOFLAGS="-buildvcs=false" go install -trimpath -ldflags "$ldflags" "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
  mv "$work/gobin/helm" "$BIN_DIR/helm"
}

start=$SECONDS
build_etcd
build_helm
build_kubernetes
log "built in $((SECONDS - start))s"
echo "$BIN_DIR"
