# deploywatch as a cluster operator image. Build: `docker build -t deploywatch .`
# Run it in a cluster with the manifests: `kubectl apply -k manifests/` (docs/install.md).
#
# Without Docker: `make image` builds this file as it is with buildah (a Debian base made by
# mmdebstrap, passed as PYTHON_IMAGE), and tests/deploy/test_image_run.py runs the result
# with podman as the manifests' pod against a real control plane (make e2e-local, CI).
# tests/deploy/test_image.py lints it (hadolint) and checks its context and its lock.

# The same Python minor as the tests run on; pinned to the patch release, slim Debian.
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
WORKDIR /src
# A venv at its final path (a venv cannot be moved): the runtime stage copies it whole. First
# the dependencies, exactly those of requirements.lock (`make lock`), each file checked
# against its hash, and the build backend the next step uses, in a layer of their own that
# a change of the code does not rebuild.
COPY requirements.lock ./
RUN python -m venv /opt/deploywatch \
 && /opt/deploywatch/bin/pip install --no-cache-dir --disable-pip-version-check --require-hashes \
      --no-deps -r requirements.lock
COPY pyproject.toml README.md ./
# The package without its emulated API server (deploywatch/testing: .dockerignore, pyproject.toml).
COPY deploywatch ./deploywatch
# Only deploywatch itself (no dependency is resolved here: they are installed), built with
# the locked setuptools; then the tools of the build leave the venv: the image runs no pip.
RUN /opt/deploywatch/bin/pip install --no-cache-dir --disable-pip-version-check --no-deps \
      --no-build-isolation . \
 && /opt/deploywatch/bin/pip uninstall --yes --disable-pip-version-check setuptools pip

FROM ${PYTHON_IMAGE}
COPY --from=build /opt/deploywatch /opt/deploywatch
# PYTHONDONTWRITEBYTECODE: nothing is written at run time (pip compiled the bytecode at build
# time), so the root filesystem can be read-only. USER: Kopf names itself "user@host" with
# getpass.getuser(), which fails for a UID without a passwd entry (65532 here, or whatever
# UID a cluster assigns) unless USER is set. In a pod, POD_ID (manifests/) names it instead.
ENV PATH=/opt/deploywatch/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    USER=deploywatch
# A numeric non-root user, so that runAsNonRoot can verify it without /etc/passwd.
USER 65532:65532
# 8080: Kopf's liveness endpoint; 8081: /metrics when DEPLOYWATCH_METRICS_PORT=8081 (the manifests set it).
EXPOSE 8080 8081
# The installed handlers (-m), so the image does not depend on this repository's layout;
# Kopf's liveness endpoint on 8080 (the Deployment's livenessProbe). The CMD is the scope:
# the whole cluster unless arguments (--namespace=...) replace it.
ENTRYPOINT ["kopf", "run", "-m", "deploywatch.handlers", "--liveness=http://0.0.0.0:8080/healthz"]
CMD ["--all-namespaces"]
