"""
The emulator filters watches and LISTs by label selector as real kube-apiservers v1.34 and v1.37 did.

``recordings/v1.*/watch-selector.json`` (``record_selectors.py``): a watch with
``labelSelector=tier in (front,edge),!canary`` and an unfiltered one, across a
Deployment created matching, labelled out of the selector and back in twice,
annotated while out, and deleted. On both versions an object that stops matching
is DELETED carrying its *previous* state (the labels that matched) at the
resourceVersion of the write that made it stop, and one that starts matching again
is ADDED with its new state, as the cacher's ``convertToWatchEvent`` makes them; a
change while it does not match is not sent. ``selector-refused.json``: the 400
bodies of LISTs and of a WATCH with selectors the server refuses; ``selector-matches.json``:
which Deployments a LIST with each of a few selectors answered.

The same writes (and the controller's recorded status writes) against the
emulator answering as each version; compared: the selector watch's event types,
each event's object (``replay.normalise``: uid, resourceVersion, timestamps and
``managedFields``' contents aside), and which write's resourceVersion each event
carries; the 400 bodies word for word.
"""
import ast
import dataclasses
import json
import pathlib
import urllib.parse

import pytest

from deploywatch import testing
from deploywatch.testing import ApiServer, ServerThread, factory, labels, versions
from tests.emulator.replay import Client, Obj, Watch, normalise, recording
from tests.unit.selector_samples import ACCEPTED, REJECTED

VERSIONS = ['v1.34', 'v1.37']
CONTROLLER = '<controller>'
NAMESPACE = 'sel'
BASE = f'/apis/apps/v1/namespaces/{NAMESPACE}/deployments'
MERGE_PATCH = 'application/merge-patch+json'


@dataclasses.dataclass
class Streams:
    filtered: list[Obj]
    unfiltered: list[Obj]


def rv(event: Obj) -> int:
    return int(event['object']['metadata']['resourceVersion'])


def recorded(version: str) -> Streams:
    exchange = recording(f'{version}/watch-selector')
    return Streams([json.loads(line) for line in exchange['response']['stream_lines']],
                   [json.loads(line) for line in exchange['unfiltered']['response']['stream_lines']])


def replay(version: str) -> Streams:
    """The recorded writes against an emulator answering as ``version``; both watches' events."""
    exchange = recording(f'{version}/watch-selector')
    steps = {step['name']: step for step in exchange['steps']}
    unfiltered = recorded(version).unfiltered
    with ServerThread(ApiServer(version=versions.RECORDED[version]), garbage_collector=False) as server:
        client = Client(server.url)
        assert client.request('POST', '/api/v1/namespaces', factory.namespace(NAMESPACE)).status == 201
        since = client.request('GET', BASE).body['metadata']['resourceVersion']
        query = urllib.parse.urlsplit(exchange['request']['path']).query
        selector = urllib.parse.parse_qs(query)['labelSelector'][0]
        path = f'{BASE}?watch=true&resourceVersion={since}'
        watches = (Watch(server.url, f'{path}&labelSelector={urllib.parse.quote(selector)}'),
                   Watch(server.url, path))
        try:
            for event, cause in zip(unfiltered, exchange['unfiltered']['causes'], strict=True):
                if cause == CONTROLLER:
                    response = client.write_status('web', event['object'], base=BASE)
                else:
                    request = steps[cause]['request']
                    response = client.request(
                        request['method'], request['path'], request.get('body'),
                        content_type=MERGE_PATCH if request['method'] == 'PATCH' else 'application/json')
                assert response.status in (200, 201), (cause, response.raw)
            # A last object that matches: once its ADDED is in, nothing of the session is still to come.
            sentinel = factory.deployment('sentinel', namespace=NAMESPACE)
            sentinel['metadata']['labels']['tier'] = 'front'
            assert client.request('POST', BASE, sentinel).status == 201
            for watch in watches:
                watch.wait(lambda events: any(e['object']['metadata']['name'] == 'sentinel' for e in events),
                           what='the sentinel')
        finally:
            for watch in watches:
                watch.close()
    return Streams(*([e for e in w.events if e['object']['metadata']['name'] == 'web'] for w in watches))


@pytest.fixture(scope='module', params=VERSIONS)
def streams(request: pytest.FixtureRequest) -> tuple[Streams, Streams]:
    """The recorded watches of a version, and the emulator's in the same session."""
    return recorded(request.param), replay(request.param)


def caused_by(streams: Streams) -> list[int]:
    """Per event of the selector's watch, which write (its place in the unfiltered watch) it carries."""
    writes = [rv(event) for event in streams.unfiltered]
    return [writes.index(rv(event)) for event in streams.filtered]


def test_the_selector_watch_gets_the_recorded_events(streams: tuple[Streams, Streams]) -> None:
    real, emulated = streams

    assert [e['type'] for e in emulated.filtered] == [e['type'] for e in real.filtered]
    assert [normalise(e['object']) for e in emulated.filtered] == [
        normalise(e['object']) for e in real.filtered]
    assert caused_by(emulated) == caused_by(real)


def without_version(obj: Obj) -> Obj:
    return {**obj, 'metadata': {**obj['metadata'], 'resourceVersion': None}}


@pytest.mark.parametrize('which', ['real', 'emulated'])
def test_a_deleted_event_carries_the_state_before_the_write_at_the_writes_version(
        streams: tuple[Streams, Streams], which: str) -> None:
    """Said of the recording, and of the emulator: the labels that matched, the version that ended it."""
    session = streams[0] if which == 'real' else streams[1]
    writes = {rv(event): index for index, event in enumerate(session.unfiltered)}
    deleted = [e for e in session.filtered if e['type'] == 'DELETED']
    assert len(deleted) == 3  # stopped matching twice, then deleted

    for event in deleted:
        write = writes[rv(event)]  # KeyError: a version no write had
        before, after = session.unfiltered[write - 1]['object'], session.unfiltered[write]['object']
        assert without_version(event['object']) == without_version(before)
        if session.unfiltered[write]['type'] == 'MODIFIED':
            assert event['object']['metadata']['labels'] != after['metadata']['labels']


@pytest.mark.parametrize('version', VERSIONS)
def test_a_refused_selector_is_answered_as_recorded(version: str) -> None:
    exchanges = recording(f'{version}/selector-refused')['exchanges']
    with ServerThread(ApiServer(version=versions.RECORDED[version]), garbage_collector=False) as server:
        client = Client(server.url)
        assert client.request('POST', '/api/v1/namespaces', factory.namespace(NAMESPACE)).status == 201
        answers = [client.request('GET', e['request']['path']) for e in exchanges]

    assert [(a.status, a.body) for a in answers] == [
        (e['response']['status'], e['response']['body']) for e in exchanges]


@pytest.mark.parametrize('version', VERSIONS)
def test_a_selector_lists_the_deployments_it_listed_on_a_real_server(version: str) -> None:
    """``selector-matches.json``: absent keys, empty values, integers and not, keywords as keys."""
    recorded = recording(f'{version}/selector-matches')
    base = urllib.parse.urlsplit(recorded['answers'][0]['path']).path
    namespace = base.split('/')[5]
    with ServerThread(ApiServer(version=versions.RECORDED[version]), garbage_collector=False) as server:
        client = Client(server.url)
        assert client.request('POST', '/api/v1/namespaces', factory.namespace(namespace)).status == 201
        for name, labelled in recorded['labelled'].items():
            body = factory.deployment(name, namespace=namespace)
            body['metadata']['labels'] = labelled
            assert client.request('POST', base, body).status == 201
        answers = {a['selector']: client.request('GET', a['path']) for a in recorded['answers']}

    listed = {selector: [item['metadata']['name'] for item in answer.body['items']]
              for selector, answer in answers.items()}
    assert listed == {a['selector']: a['names'] for a in recorded['answers']}


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
    """Filtering with ``deploywatch.base.selectors`` (as it did) agreed with deploywatch by construction.
    ``demo.py`` is exempt: it shows deploywatch's own output on a terminal (``deploywatch.output.text``)."""
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
