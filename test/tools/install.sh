#!/usr/bin/env bash
# Builds every binary the tests, the local cluster and the linters need into one
# folder, from the Go module proxy only: no release tarball, no setup-envtest.
#
# A binary is rebuilt only when it is missing or its pin changed. The pin a
# binary was built from is written to <bin>/.pins/<name>; for the Kubernetes
# binaries and etcd the pin includes a hash of the go.sum that fixes their
# dependencies, so editing test/tools/go.mod rebuilds them and nothing else.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
bin=$(mkdir -p "${1:-$here/../../bin}" && cd "${1:-$here/../../bin}" && pwd)
mkdir -p "$bin/.pins"

KUBE_VERSION=v1.37.2
KWOK_VERSION=v0.8.0
CONTROLLER_TOOLS_VERSION=v0.23.0
HELM_VERSION=v3.22.0
GOLANGCI_LINT_VERSION=v2.15.0
# Prometheus 3.16's module version; promtool tests the chart's alerts.
PROMETHEUS_VERSION=v0.316.0

sumof() { sha256sum "$1" | cut -c1-12; }

# stale NAME PIN: true when NAME must be (re)built.
stale() {
	[[ ! -x "$bin/$1" ]] || [[ "$(cat "$bin/.pins/$1" 2>/dev/null)" != "$2" ]]
}

# built NAME PIN: record what NAME was built from.
built() { echo "$2" >"$bin/.pins/$1"; }

step() { echo "tools: building $1 ($2)" >&2; }

kube_pin="$KUBE_VERSION go.sum:$(sumof "$here/go.sum")"
kube_bins=()
for b in kube-apiserver kube-scheduler kube-controller-manager kubectl; do
	stale "$b" "$kube_pin" && kube_bins+=("$b")
done
if ((${#kube_bins[@]})); then
	step "${kube_bins[*]}" "$KUBE_VERSION"
	minor=${KUBE_VERSION#v1.}
	minor=${minor%%.*}
	v=k8s.io/component-base/version
	ldflags="-s -w -X $v.gitVersion=$KUBE_VERSION -X $v.gitMajor=1 -X $v.gitMinor=$minor -X $v.gitTreeState=clean"
	pkgs=()
	for b in "${kube_bins[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/$b"); done
	# One go build for all of them, so shared packages compile once.
	(cd "$here" && CGO_ENABLED=0 go build -trimpath -ldflags "$ldflags" -o "$bin/" "${pkgs[@]}")
	for b in "${kube_bins[@]}"; do built "$b" "$kube_pin"; done
fi

etcd_pin="go.sum:$(sumof "$here/etcd/go.sum")"
if stale etcd "$etcd_pin"; then
	step etcd "$(grep 'etcd/server/v3 ' "$here/etcd/go.mod" | awk '{print $NF}')"
	(cd "$here/etcd" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$bin/etcd" .)
	built etcd "$etcd_pin"
fi

# Tools whose own go.mod is fine as it is: go install at a pinned version.
install() { # NAME PACKAGE VERSION
	if stale "$1" "$3"; then
		step "$1" "$3"
		GOBIN="$bin" CGO_ENABLED=0 go install -trimpath -ldflags "-s -w" "$2@$3"
		built "$1" "$3"
	fi
}
install kwok sigs.k8s.io/kwok/cmd/kwok "$KWOK_VERSION"
install controller-gen sigs.k8s.io/controller-tools/cmd/controller-gen "$CONTROLLER_TOOLS_VERSION"
install helm helm.sh/helm/v3/cmd/helm "$HELM_VERSION"
install golangci-lint github.com/golangci/golangci-lint/v2/cmd/golangci-lint "$GOLANGCI_LINT_VERSION"
install promtool github.com/prometheus/prometheus/cmd/promtool "$PROMETHEUS_VERSION"
