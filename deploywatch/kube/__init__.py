"""Kubernetes I/O: the list-then-watch loop inside Kopf, its requests, its scope, the preflight."""
