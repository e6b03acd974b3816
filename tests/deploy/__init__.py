"""Tests of what ships deploywatch to a cluster: the image, the manifests, their RBAC."""
