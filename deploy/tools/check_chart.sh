#!/usr/bin/env bash
# Checks the Helm chart deploy/helm/kvtier without the helm binary (not in Debian):
#   1. builds deploy/tools/helm-render (Go text/template + sprig from Debian, offline) and runs its tests;
#   2. renders the chart (--strict: a reference to an undefined value fails) for the default values and for
#      every deploy/helm/kvtier/ci/*-values.yaml, and checks each render with check_chart.py (kinds, names,
#      ports, probes, mounts, security context, the embedded kvtier config against docs/config.md, alerts
#      against the exported metrics);
#   3. checks that the chart refuses unsafe value combinations;
#   4. runs promtool (when installed) on the alert rules, and yamllint on the renders and the values files.
# Usage: check_chart.sh [WORK_DIR]   (WORK_DIR holds the renderer and the renders; default: a temp dir)
# Needs golang-go, golang-github-masterminds-sprig-dev, golang-gopkg-yaml.v2-dev, python3-yaml, yamllint
# (scripts/install-deps.sh).
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
chart="$repo/deploy/helm/kvtier"
work="${1:-}"
if [ -z "$work" ]; then
  work="$(mktemp -d)"
  trap 'rm -rf "$work"' EXIT
fi
mkdir -p "$work"
work="$(cd "$work" && pwd)"

fail() { echo "check_chart: FAIL: $*" >&2; exit 1; }

for tool in go python3 yamllint; do
  command -v "$tool" >/dev/null || fail "$tool not found (scripts/install-deps.sh installs it)"
done
python3 -c 'import yaml' 2>/dev/null || fail "python3 has no yaml module (Debian python3-yaml)"

# Debian's Go libraries live in a GOPATH; module mode would try the network. Everything stays in $work.
export GO111MODULE=off GOPATH="${KVTIER_GOPATH:-/usr/share/gocode}" GOPROXY=off GOFLAGS=
export GOCACHE="$work/gocache"
echo "== helm-render: test and build"
(cd "$here/helm-render" && go vet . && go test -count=1 . && go build -o "$work/helm-render" .) \
  || fail "helm-render does not build or its tests fail"
render=("$work/helm-render" --strict)

# case name -> release name, namespace, values file (relative to the chart; empty: defaults only).
cases=(
  "default demo inference -"
  "all-on cache llm ci/all-on-values.yaml"
  "dram-only kvtier default ci/dram-only-values.yaml"
)
# Every ci/*-values.yaml must be a checked case, so a new one cannot go unchecked.
for f in "$chart"/ci/*-values.yaml; do
  name="$(basename "$f" -values.yaml)"
  printf '%s\n' "${cases[@]}" | grep -q "^$name " \
    || fail "ci/$(basename "$f") has no case in check_chart.sh and check_chart.py"
done

status=0
rendered=()
for c in "${cases[@]}"; do
  read -r name release namespace values <<<"$c"
  out="$work/$name.yaml"
  args=(--name "$release" --namespace "$namespace")
  [ "$values" != "-" ] && args+=(-f "$chart/$values")
  echo "== render $name"
  if ! "${render[@]}" "${args[@]}" "$chart" >"$out"; then
    echo "check_chart: FAIL: the chart does not render for $name" >&2
    status=1
    continue
  fi
  rendered+=("$out")
  python3 "$here/check_chart.py" "$name" "$out" "$repo" || status=1
done

# Value combinations the chart must refuse, with the reason it must give.
echo "== refused values"
refuse() {
  local why="$1" values="$2" f="$work/refuse.yaml" err
  printf '%s\n' "$values" >"$f"
  if err="$("${render[@]}" -f "$f" "$chart" 2>&1 >/dev/null)"; then
    echo "check_chart: FAIL: rendered although $why" >&2
    status=1
  elif ! grep -q -- "$3" <<<"$err"; then
    echo "check_chart: FAIL: $why: error does not mention '$3': $err" >&2
    status=1
  else
    echo "ok   refused: $why"
  fi
}
refuse "hostPath without one pod per node" $'storage:\n  type: hostPath\npodAntiAffinity: soft' \
  "podAntiAffinity to hard"
refuse "TLS on without a Secret" $'tls:\n  enabled: true' "tls.secretName is required"
refuse "unknown storage type" $'storage:\n  type: nfs' "storage.type must be one of"
refuse "config.tls set by hand" $'config:\n  tls:\n    cert_file: /x' "config.tls is set by the chart"
refuse "alerts without the scrape job they select" $'prometheusRule:\n  enabled: true' \
  "prometheusRule needs serviceMonitor"
refuse "a reference to a value values.yaml does not define (--strict)" $'image:\n  tag: null' 'no entry for key "tag"'
# Chart.yaml's kubeVersion: native gRPC probes need Kubernetes 1.24.
if "${render[@]}" --kube-version v1.23.0 "$chart" >/dev/null 2>&1; then
  echo "check_chart: FAIL: rendered for Kubernetes 1.23, which has no native gRPC probes" >&2
  status=1
fi

if command -v promtool >/dev/null; then
  echo "== promtool check rules"
  python3 "$here/check_chart.py" --rules "$work/all-on.yaml" "$work/rules.yaml" \
    && promtool check rules "$work/rules.yaml" || status=1
else
  echo "== promtool not installed (Debian prometheus): alert expressions not parsed"
fi

echo "== yamllint"
yamllint -f parsable -c "$here/yamllint.yaml" "${rendered[@]}" "$chart/values.yaml" "$chart"/ci/*.yaml \
  "$chart/Chart.yaml" || status=1

[ "$status" -eq 0 ] || fail "see above"
echo "check_chart: ok"
