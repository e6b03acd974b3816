#!/usr/bin/env bash
# Stops what up.sh started, by the process ids it recorded. The data folder stays (up.sh starts
# the same cluster again; REALK8S_FRESH=1 up.sh starts an empty one).
D=${REALK8S_DIR:-${TMPDIR:-/tmp}/realk8s}
alive() { [ -r "/proc/$1/status" ] && ! grep -q '^State:[[:space:]]*Z' "/proc/$1/status"; }
for name in kubelet kube-controller-manager kube-apiserver etcd; do
  [ -f "$D/$name.pid" ] || continue
  pid=$(cat "$D/$name.pid")
  if kill "$pid" 2>/dev/null; then
    for _ in $(seq 100); do alive "$pid" || break; sleep 0.1; done
    alive "$pid" && kill -9 "$pid" 2>/dev/null
  fi
  rm -f "$D/$name.pid"
done
exit 0
