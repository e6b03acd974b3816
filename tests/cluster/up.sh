#!/usr/bin/env bash
# The project's real Kubernetes control plane on 127.0.0.1: etcd, kube-apiserver and
# kube-controller-manager built from Go modules (build.sh; the first start on a machine builds,
# later ones take the cached binaries), token auth, RBAC, TokenRequest, an audit log, and a
# stand-in kubelet (kubelet.py) that makes pods Running and Ready so rollouts complete.
#
#   tests/cluster/up.sh                       # prints the admin kubeconfig's path, last
#   export DEPLOYWATCH_E2E_KUBECONFIG=$(tests/cluster/up.sh | tail -1)
#   tests/cluster/down.sh                     # stops it (the data folder stays)
#
# Idempotent: it starts only what is not running (after the kube-apiserver was killed, just
# that), then waits for /readyz.
#
# Settings (environment):
#   REALK8S_DIR      data, logs, kubeconfigs          (default: ${TMPDIR:-/tmp}/realk8s)
#   REALK8S_PORT     kube-apiserver's HTTPS port      (default: 6443; etcd: PORT-4064, PORT-4063)
#   REALK8S_VERSION  1.37 (default) or 1.34; one data folder per version
#   REALK8S_FEATURE_GATES  passed to kube-apiserver, e.g. WatchList=false
#   REALK8S_KUBELET=0      no stand-in kubelet (pods then stay Pending)
#   REALK8S_FRESH=1        wipe REALK8S_DIR first (a new, empty cluster)
#
# In REALK8S_DIR afterwards:
#   kubeconfig              user "admin" (group system:masters)
#   kubeconfig-deploywatch  user "deploywatch", bound to NOTHING: bind it yourself (e.g. a
#                           ClusterRoleBinding to manifests/' ClusterRole); ServiceAccount
#                           tokens (TokenRequest) work too
#   logs/audit.log          one JSON line per request (Metadata level) of every user but the
#                           control plane's own: filter on .user.username
#   logs/<process>.log, <process>.pid, version
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
D=${REALK8S_DIR:-${TMPDIR:-/tmp}/realk8s}
PORT=${REALK8S_PORT:-6443}
ETCD_CLIENT=$((PORT - 4064)); ETCD_PEER=$((PORT - 4063))
VERSION=${REALK8S_VERSION:-1.37}
[ "${REALK8S_FRESH:-0}" = 1 ] && { "$here/down.sh" >/dev/null 2>&1 || true; rm -rf "$D"; }
if [ -f "$D/version" ] && [ "$(cat "$D/version")" != "$VERSION" ]; then
  echo "up.sh: $D holds a v$(cat "$D/version") cluster: use another REALK8S_DIR or REALK8S_FRESH=1" >&2; exit 2
fi
BIN=$("$here/build.sh" "$VERSION" | tail -1)
mkdir -p "$D/pki" "$D/logs" "$D/etcd"
echo "$VERSION" > "$D/version"

P=$D/pki
if [ ! -f "$P/tokens.csv" ]; then
  openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=deploywatch-test-ca" \
    -keyout "$P/ca.key" -out "$P/ca.crt" 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -subj "/CN=kube-apiserver" -keyout "$P/apiserver.key" \
    -out "$P/apiserver.csr" 2>/dev/null
  printf 'subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes.default.svc\n' > "$P/san.ext"
  openssl x509 -req -in "$P/apiserver.csr" -CA "$P/ca.crt" -CAkey "$P/ca.key" -CAcreateserial \
    -days 3650 -extfile "$P/san.ext" -out "$P/apiserver.crt" 2>/dev/null
  openssl genrsa -out "$P/sa.key" 2048 2>/dev/null
  openssl rsa -in "$P/sa.key" -pubout -out "$P/sa.pub" 2>/dev/null
  token() { od -An -N16 -tx1 /dev/urandom | tr -d ' \n'; }
  { echo "$(token),admin,admin,system:masters"
    echo "$(token),deploywatch,deploywatch"
    echo "$(token),system:kube-controller-manager,kcm,system:masters"
    echo "$(token),deploywatch:kubelet,kubelet,system:masters"; } > "$P/tokens.csv.tmp"
  mv "$P/tokens.csv.tmp" "$P/tokens.csv"
fi
token_of() { awk -F, -v user="$1" '$2 == user { print $1 }' "$P/tokens.csv"; }
cat > "$D/audit-policy.yaml" <<'EOF'
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived"]
rules:
  - level: None
    users: ["system:kube-controller-manager", "system:apiserver", "deploywatch:kubelet"]
  - level: None
    userGroups: ["system:serviceaccounts:kube-system"]
  - level: Metadata
EOF

kubeconfig() { # FILE USER
  cat > "$1.tmp" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: realk8s
  cluster: {server: "https://127.0.0.1:$PORT", certificate-authority: "$P/ca.crt"}
users:
- name: $2
  user: {token: "$(token_of "$2")"}
contexts:
- name: $2@realk8s
  context: {cluster: realk8s, user: $2, namespace: default}
current-context: $2@realk8s
EOF
  mv "$1.tmp" "$1"
}
kubeconfig "$D/kubeconfig" admin
kubeconfig "$D/kubeconfig-deploywatch" deploywatch
kubeconfig "$D/kubeconfig-controller-manager" system:kube-controller-manager

running() { # a live process (not an unreaped zombie, not a reused pid) under the recorded pid
  local pid; pid=$(cat "$D/$1.pid" 2>/dev/null) || return 1
  [ -r "/proc/$pid/status" ] && ! grep -q '^State:[[:space:]]*Z' "/proc/$pid/status" &&
    tr '\0' ' ' < "/proc/$pid/cmdline" | grep -q -- "$1"; }
start() { # NAME CMD...
  local name=$1; shift
  running "$name" && return 0
  setsid "$@" >> "$D/logs/$name.log" 2>&1 < /dev/null & echo $! > "$D/$name.pid"
}
ready() { # URL: a health endpoint says ok (kube-apiserver: 'ok'; etcd: {"health":"true"}) within 2 s
  python3 - "$1" "$P/ca.crt" "$(token_of admin)" <<'PY' 2>/dev/null
import ssl, sys, urllib.request
request = urllib.request.Request(sys.argv[1], headers={"Authorization": f"Bearer {sys.argv[3]}"})
context = ssl.create_default_context(cafile=sys.argv[2]) if sys.argv[1].startswith("https") else None
body = urllib.request.urlopen(request, context=context, timeout=2).read()
sys.exit(0 if body == b"ok" or b'"health":"true"' in body else 1)
PY
}
wait_ready() { # NAME URL
  for _ in $(seq 240); do ready "$2" && return 0; running "$1" || break; sleep 0.25; done
  echo "up.sh: $1 is not ready; the end of $D/logs/$1.log:" >&2; tail -20 "$D/logs/$1.log" >&2; exit 1
}

start etcd "$BIN/etcd" --data-dir "$D/etcd" \
  --listen-client-url "http://127.0.0.1:$ETCD_CLIENT" --listen-peer-url "http://127.0.0.1:$ETCD_PEER"
wait_ready etcd "http://127.0.0.1:$ETCD_CLIENT/health"
# --endpoint-reconciler-type=none: since v1.3x the reconciler of the kubernetes Service refuses
# a loopback advertise address. --shutdown-watch-termination-grace-period: without it a SIGTERM
# waits for open watches up to the 60 s shutdown timeout; a pod's apiserver is given ~2 s.
start kube-apiserver "$BIN/kube-apiserver" \
  --etcd-servers="http://127.0.0.1:$ETCD_CLIENT" --bind-address=127.0.0.1 --advertise-address=127.0.0.1 \
  --secure-port="$PORT" --tls-cert-file="$P/apiserver.crt" --tls-private-key-file="$P/apiserver.key" \
  --client-ca-file="$P/ca.crt" --token-auth-file="$P/tokens.csv" --authorization-mode=RBAC \
  --service-account-issuer=https://kubernetes.default.svc --service-account-key-file="$P/sa.pub" \
  --service-account-signing-key-file="$P/sa.key" --service-cluster-ip-range=10.0.0.0/24 \
  --audit-policy-file="$D/audit-policy.yaml" --audit-log-path="$D/logs/audit.log" \
  --audit-log-maxsize=500 --audit-log-format=json --endpoint-reconciler-type=none \
  --shutdown-watch-termination-grace-period=2s \
  ${REALK8S_FEATURE_GATES:+--feature-gates="$REALK8S_FEATURE_GATES"}
wait_ready kube-apiserver "https://127.0.0.1:$PORT/readyz"

# No node lifecycle controller: the stand-in kubelet registers its Node but sends no heartbeats,
# and the controller would taint it and evict every pod after five minutes.
start kube-controller-manager "$BIN/kube-controller-manager" \
  --kubeconfig="$D/kubeconfig-controller-manager" --leader-elect=false --secure-port=0 \
  --service-account-private-key-file="$P/sa.key" --root-ca-file="$P/ca.crt" \
  --controllers='*,-node-lifecycle-controller'
if [ "${REALK8S_KUBELET:-1}" != 0 ]; then
  token_of deploywatch:kubelet > "$P/kubelet.token"
  start kubelet python3 "$here/kubelet.py" --server "https://127.0.0.1:$PORT" --ca "$P/ca.crt" \
    --token-file "$P/kubelet.token"
fi
echo "up.sh: Kubernetes $("$BIN/kube-apiserver" --version | cut -d' ' -f2) on https://127.0.0.1:$PORT, logs in $D/logs" >&2
echo "$D/kubeconfig"
