"""
Kopf's ClusterKopfPeering resource, served by the emulated API server for one test.

The emulator (``deploywatch.testing``) serves Deployments, Namespaces, Events and CRDs.
The ha overlay's replicas also list, watch and patch ``clusterkopfpeerings.kopf.dev``,
and Kopf finds that resource through discovery. Until the emulator serves it itself,
:func:`serve` adds it for the duration of a test, through pytest's ``monkeypatch``:

* a ``ResourceType`` appended to ``kinds.ALL``, where the emulator's router
  (``kinds.find``) and a new ``Store`` look resource types up; a CRD without a status
  subresource, so ``status`` is written through the object itself, as Kopf does;
* discovery documents with the ``kopf.dev`` group added to ``/apis`` and
  ``/apis/kopf.dev/v1`` listing the resource as a real API server lists a CRD's.

The store's generic create/list/watch/merge-patch then serve it like any other kind.
"""
import json
import pathlib
import shutil

import pytest

from deploywatch.testing import kinds
from deploywatch.testing import server as server_module

CLUSTER_PEERINGS = kinds.ResourceType('kopf.dev', 'v1', 'clusterkopfpeerings', 'ClusterKopfPeering',
                                      namespaced=False, has_status=False)

GROUP = {
    'name': 'kopf.dev',
    'versions': [{'groupVersion': 'kopf.dev/v1', 'version': 'v1'}],
    'preferredVersion': {'groupVersion': 'kopf.dev/v1', 'version': 'v1'},
}
RESOURCES = {
    'kind': 'APIResourceList',
    'apiVersion': 'v1',
    'groupVersion': 'kopf.dev/v1',
    'resources': [{
        'name': 'clusterkopfpeerings', 'singularName': 'clusterkopfpeering', 'namespaced': False,
        'kind': 'ClusterKopfPeering',
        'verbs': ['delete', 'deletecollection', 'get', 'list', 'patch', 'create', 'update', 'watch'],
    }],
}


def serve(monkeypatch: pytest.MonkeyPatch, workdir: pathlib.Path) -> None:
    """From now until the test ends, new emulated servers serve ClusterKopfPeerings."""
    monkeypatch.setattr(kinds, 'ALL', (*kinds.ALL, CLUSTER_PEERINGS))
    discovery = workdir / 'discovery'
    shutil.copytree(server_module.DISCOVERY, discovery)
    apis = json.loads((discovery / 'apis.json').read_text())
    apis['groups'].append(GROUP)
    (discovery / 'apis.json').write_text(json.dumps(apis))
    (discovery / 'apis-kopf.dev-v1.json').write_text(json.dumps(RESOURCES))
    monkeypatch.setattr(server_module, 'DISCOVERY', discovery)
