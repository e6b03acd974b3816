//go:build tools

// The commands tests/cluster/build.sh builds from this module's requirements.
package cluster

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
)
