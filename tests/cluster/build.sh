#!/usr/bin/env bash
# Builds etcd, kube-apiserver and kube-controller-manager of one Kubernetes minor from the Go
# module proxy, once per machine: the binaries go to a cache outside the repo,
#   ${DEPLOYWATCH_K8S_CACHE:-~/.cache/deploywatch/k8s}/<gitVersion>/
# and a later call with the same version and the same go.mod/go.sum prints that folder at once.
#
#   tests/cluster/build.sh 1.37     # prints the folder holding the three binaries, last
#
# The modules are pinned in tests/cluster/go: go.mod/go.sum for v1.37, v1.34.mod/v1.34.sum
# for v1.34 (go -modfile). k8s.io/kubernetes requires its staging modules at v0.0.0 with
# replace directives a consumer ignores, so each go.mod replaces them with the published
# v0.<minor>.x; the version is stamped with -ldflags -X, as Kubernetes' hack/lib/version.sh
# does, or /version would show placeholders.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
minor=${1:?usage: build.sh 1.37|1.34}
mod=$here/go
case "$minor" in
  1.37) modfile=$mod/go.mod ;;
  1.34) modfile=$mod/v1.34.mod ;;
  *) echo "build.sh: Kubernetes 1.37 or 1.34, not '$minor'" >&2; exit 2 ;;
esac
version=$(awk '$1 == "k8s.io/kubernetes" { print $2 }' "$modfile")
[ -n "$version" ] || { echo "build.sh: $modfile requires no k8s.io/kubernetes" >&2; exit 2; }
out=${DEPLOYWATCH_K8S_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/deploywatch/k8s}/$version
sums=$(cat "$modfile" "${modfile%.mod}.sum" "$mod/etcd/main.go" "$0" | cksum | cut -d' ' -f1)
if [ "$(cat "$out/.built" 2>/dev/null)" = "$sums" ]; then echo "$out"; exit 0; fi

command -v go >/dev/null || PATH=$PATH:/usr/local/go/bin  # where Go's own archive installs it
command -v go >/dev/null || { echo "build.sh: needs the go command (Go 1.26 or newer) on PATH" >&2; exit 2; }
major=${version#v}; major=${major%%.*}
ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  ldflags+=" -X $pkg.gitVersion=$version -X $pkg.gitMajor=$major -X $pkg.gitMinor=${minor#*.}"
  ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
done
echo "build.sh: building Kubernetes $version (etcd, kube-apiserver, kube-controller-manager) into $out;" \
  "the first build on a machine takes several minutes" >&2
started=$(date +%s)
mkdir -p "$out"
rm -f "$out/.built"
cd "$mod"
CGO_ENABLED=0 go build -modfile="$modfile" -buildvcs=false -trimpath -tags providerless -ldflags "$ldflags" -o "$out/" \
  k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager ./etcd
echo "$sums" > "$out/.built"
echo "build.sh: Kubernetes $version built in $(($(date +%s) - started)) s" >&2
echo "$out"
