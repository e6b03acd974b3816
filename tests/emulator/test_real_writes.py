"""
The emulator answers the everyday writes as real kube-apiservers v1.24 to v1.37 did.

``recordings/v1.*`` hold the same session recorded from each version
(``versions.RECORDED``) by ``record.py``: kubectl's apply (create, then an env value
changed), scale, set image, rollout pause, annotate and label, with one watch
across all of it, the deployment controller's status writes in between, a watch
from a forgotten version, and a user bound to nothing. Each test sends the
emulator, answering as that version, the recorded requests byte for byte (path
and query, ``Content-Type``, ``User-Agent``, body) and plays the controller with
the status it recorded (``Client.write_status``).

Compared as recorded: every watch event's object, including ``generation``,
timestamps and every ``managedFields`` entry (manager, subresource, fields
owned, ``time`` or its absence, order) — the emulator's clock is set to the
recorded time of each write; the answers to the writes (a ``Scale`` for
``/scale``); the 403 and 410 bodies; the BOOKMARK object. Only uids and
resourceVersion numbers are replaced (their equalities and order are checked).
"""
import copy
import dataclasses
import itertools
import json
import re
from collections.abc import Iterator
from typing import Any

import pytest

from deploywatch.testing import ApiServer, ServerThread, User, factory, versions
from deploywatch.testing.controller import rolled_out
from tests.emulator.replay import BASE, Client, Obj, Response, Watch, recording

VERSIONS = versions.RECORDED
CONTROLLER = '<controller>'
STEPS = ['apply-create', 'apply-update', 'scale', 'set-image', 'rollout-pause', 'annotate', 'label']
FORBIDDEN = ['forbidden-list', 'forbidden-watch', 'forbidden-list-namespaced', 'forbidden-get',
             'forbidden-patch']
NOBODY_TOKEN = 'bound-to-nothing'


def normalised(obj: Obj) -> Obj:
    """An object with only its uid and resourceVersion replaced: the rest is compared as is."""
    result = copy.deepcopy(obj)
    metadata = result.get('metadata')
    if isinstance(metadata, dict):
        for field in ('uid', 'resourceVersion'):
            if isinstance(metadata.get(field), str):
                metadata[field] = f'<{field}>'
    return result


def latest_time(obj: Obj) -> str:
    """When the write that produced a recorded object happened: its newest timestamp."""
    times = [entry['time'] for entry in obj['metadata'].get('managedFields') or [] if 'time' in entry]
    latest: str = max([obj['metadata']['creationTimestamp'], *times])
    return latest


def send(client: Client, exchange: Obj) -> Response:
    """A recorded request again, with its headers."""
    request = exchange['request']
    headers = request.get('headers') or {}
    return client.request(request['method'], request['path'], request.get('body'),
                          content_type=headers.get('Content-Type', 'application/json'),
                          agent=headers.get('User-Agent'))


@dataclasses.dataclass
class Replay:
    version: str
    answers: dict[str, Response]  # per step
    after_rollout: Obj
    final: Obj
    events: list[Obj]
    since: str


def replay(version: str) -> Replay:
    """The recorded session against an emulator answering as ``version``."""
    exchange = recording(f'{version}/watch-everyday')
    recorded = [json.loads(line) for line in exchange['response']['stream_lines']]
    changes = [e for e in recorded if e['type'] != 'BOOKMARK']
    clock = ['']
    api = ApiServer(bookmark_interval=0.2, version=VERSIONS[version])
    api.store.clock = lambda: clock[0]
    with ServerThread(api, garbage_collector=False) as server:
        client = Client(server.url)
        assert client.request('POST', '/api/v1/namespaces', factory.namespace('rec')).status == 201
        since = client.request('GET', BASE).body['metadata']['resourceVersion']
        watch = Watch(server.url, f'{BASE}?watch=true&allowWatchBookmarks=true&resourceVersion={since}')
        answers: dict[str, Response] = {}
        after_rollout: Obj = {}
        try:
            for event, cause in zip(changes, exchange['causes'], strict=True):
                clock[0] = latest_time(event['object'])
                if cause == CONTROLLER:
                    response = client.write_status('web', event['object'])
                else:
                    if cause == 'apply-update':
                        after_rollout = client.get('web')
                    response = answers[cause] = send(client, recording(f'{version}/{cause}'))
                assert response.status in (200, 201), (cause, response.raw)
            watch.wait(lambda events: len([e for e in events if e['type'] != 'BOOKMARK']) >= len(changes)
                       and events[-1]['type'] == 'BOOKMARK', what='every change, then a BOOKMARK')
            final = client.get('web')
        finally:
            watch.close()
    return Replay(version, answers, after_rollout, final, watch.events, since)


@pytest.fixture(scope='module', params=list(VERSIONS))
def replayed(request: pytest.FixtureRequest) -> Replay:
    return replay(request.param)


def versions_of(events: list[Obj]) -> list[int]:
    return [int(e['object']['metadata']['resourceVersion']) for e in events]


# -- the session, event by event -----------------------------------------------------------------

def test_every_watch_event_carries_the_recorded_object(replayed: Replay) -> None:
    exchange = recording(f'{replayed.version}/watch-everyday')
    recorded = [json.loads(line) for line in exchange['response']['stream_lines']]
    recorded_changes = [e for e in recorded if e['type'] != 'BOOKMARK']
    changes = [e for e in replayed.events if e['type'] != 'BOOKMARK']

    assert [e['type'] for e in changes] == [e['type'] for e in recorded_changes]
    for index, (mine, theirs, cause) in enumerate(zip(changes, recorded_changes, exchange['causes'],
                                                      strict=True)):
        assert normalised(mine['object']) == normalised(theirs['object']), f'event {index}, after {cause}'
    for events in (changes, recorded_changes):
        assert versions_of(events) == sorted(set(versions_of(events)))
        assert len({e['object']['metadata']['uid'] for e in events}) == 1


def test_generation_moves_with_spec_and_annotations_only(replayed: Replay) -> None:
    """What the recordings show (strategy.go): annotate moves it, label and status writes do not."""
    exchange = recording(f'{replayed.version}/watch-everyday')
    recorded = [json.loads(line) for line in exchange['response']['stream_lines'] if 'BOOKMARK' not in line]
    changes = [e for e in replayed.events if e['type'] != 'BOOKMARK']

    def moves(events: list[Obj]) -> list[tuple[str, int]]:
        generations = [e['object']['metadata']['generation'] for e in events]
        return [(cause, now - before) for cause, (before, now) in
                zip(exchange['causes'][1:], itertools.pairwise(generations), strict=True)]

    assert moves(changes) == moves(recorded)
    moved = {cause for cause, delta in moves(recorded) if delta}
    assert moved == {'apply-update', 'scale', 'set-image', 'rollout-pause', 'annotate'}


def test_bookmarks_are_the_recorded_object_at_the_latest_version(replayed: Replay) -> None:
    exchange = recording(f'{replayed.version}/watch-everyday')
    recorded = [json.loads(line) for line in exchange['response']['stream_lines']]
    recorded_bookmark = next(e for e in recorded if e['type'] == 'BOOKMARK')
    bookmarks = [e for e in replayed.events if e['type'] == 'BOOKMARK']

    assert bookmarks
    for bookmark in bookmarks:
        expected = copy.deepcopy(recorded_bookmark)
        expected['object']['metadata']['resourceVersion'] = bookmark['object']['metadata']['resourceVersion']
        assert bookmark == expected
    assert versions_of(replayed.events) == sorted(versions_of(replayed.events))


# -- the answers to the writes -------------------------------------------------------------------

@pytest.mark.parametrize('step', STEPS)
def test_each_kubectl_write_answers_as_recorded(replayed: Replay, step: str) -> None:
    exchange = recording(f'{replayed.version}/{step}')
    answer = replayed.answers[step]

    assert answer.status == exchange['response']['status']
    assert answer.headers['Content-Type'] == exchange['response']['headers']['Content-Type']
    assert normalised(answer.body) == normalised(exchange['response']['body'])
    # The answer is the object at the version its watch event carries.
    rv = answer.body['metadata']['resourceVersion']
    assert any(e['object']['metadata']['resourceVersion'] == rv and e['type'] != 'BOOKMARK'
               for e in replayed.events)


def test_scale_answers_a_scale_and_records_a_manager_without_a_time(replayed: Replay) -> None:
    answer = replayed.answers['scale'].body
    assert (answer['kind'], answer['apiVersion']) == ('Scale', 'autoscaling/v1')
    entry, = (e for e in replayed.final['metadata']['managedFields'] if e.get('subresource') == 'scale')
    assert entry == {'manager': 'kubectl', 'operation': 'Update', 'apiVersion': 'apps/v1',
                     'fieldsType': 'FieldsV1', 'fieldsV1': {'f:spec': {'f:replicas': {}}},
                     'subresource': 'scale'}


@pytest.mark.parametrize('name', ['get-after-rollout', 'get-final'])
def test_gets_answer_the_recorded_object(replayed: Replay, name: str) -> None:
    recorded = recording(f'{replayed.version}/{name}')['response']['body']
    mine = replayed.after_rollout if name == 'get-after-rollout' else replayed.final
    assert normalised(mine) == normalised(recorded)


def test_the_emulated_controller_writes_the_recorded_status(replayed: Replay) -> None:
    """``controller.rolled_out`` of the version: the fields the real controller wrote once the rollout
    was done (v1.37: ``terminatingReplicas``: 0 too), and the apiserver kept."""
    recorded = recording(f'{replayed.version}/get-after-rollout')['response']['body']
    version = VERSIONS[replayed.version]
    mine = rolled_out(replayed.after_rollout, time='2026-01-01T10:00:00Z', version=version)['status']

    assert list(mine) == list(recorded['status'])  # in the order Go writes them
    assert {k: v for k, v in mine.items() if k != 'conditions'} == {
        k: v for k, v in recorded['status'].items() if k != 'conditions'}
    assert [(c['type'], c['status'], c['reason']) for c in mine['conditions']] == [
        (c['type'], c['status'], c['reason']) for c in recorded['status']['conditions']]
    # What a newer controller writes, an apiserver without the field drops (strategy.go).
    newest = rolled_out(replayed.after_rollout, time='2026-01-01T10:00:00Z', version=versions.V1_37)
    with ServerThread(ApiServer(version=version), garbage_collector=False) as server:
        client = Client(server.url)
        assert client.request('POST', '/api/v1/namespaces', factory.namespace('rec')).status == 201
        body = recording(f'{replayed.version}/apply-create')['request']['body']
        created = client.request('POST', BASE, body)
        assert created.status == 201, created.raw
        newest['metadata']['resourceVersion'] = created.body['metadata']['resourceVersion']
        written = client.request('PUT', f'{BASE}/web/status', newest)
    assert written.status == 200, written.raw
    assert written.body['status'].keys() == recorded['status'].keys()


# -- errors --------------------------------------------------------------------------------------

@pytest.fixture(params=list(VERSIONS))
def version_server(request: pytest.FixtureRequest) -> Iterator[tuple[str, ServerThread]]:
    api = ApiServer(version=VERSIONS[request.param])
    api.add_user(User('deploywatch', NOBODY_TOKEN, ()))
    with ServerThread(api, garbage_collector=False) as server:
        client = Client(server.url)
        assert client.request('POST', '/api/v1/namespaces', factory.namespace('rec')).status == 201
        yield request.param, server


@pytest.mark.parametrize('name', FORBIDDEN)
def test_a_user_bound_to_nothing_gets_the_recorded_403(version_server: tuple[str, ServerThread],
                                                       name: str) -> None:
    version, server = version_server
    exchange = recording(f'{version}/{name}')
    client = Client(server.url, NOBODY_TOKEN)

    response = send(client, exchange)

    assert response.status == exchange['response']['status'] == 403
    assert response.headers['Content-Type'] == exchange['response']['headers']['Content-Type']
    assert response.body == exchange['response']['body']


def test_a_watch_from_a_forgotten_version_is_one_error_event(
        version_server: tuple[str, ServerThread]) -> None:
    version, server = version_server
    exchange = recording(f'{version}/watch-too-old-410')
    line, = exchange['response']['stream_lines']
    found = re.fullmatch(r'.*"too old resource version: (\d+) \((\d+)\)".*\n', line)
    assert found is not None, line
    requested, oldest = found.groups()
    client = Client(server.url)
    since = client.request('GET', BASE).body['metadata']['resourceVersion']
    for name in ('a', 'b'):
        body = json.loads(json.dumps(recording(f'{version}/apply-create')['request']['body']))
        body['metadata']['name'] = name
        assert client.request('POST', BASE, body).status == 201
    server.call(server.server.store.compact)
    now = client.request('GET', BASE).body['metadata']['resourceVersion']

    watch = Watch(server.url, exchange['request']['path'].replace(f'resourceVersion={requested}',
                                                                   f'resourceVersion={since}'))
    watch.wait_for_end(timeout=1.0)

    assert watch.status == exchange['response']['status'] == 200
    assert watch.headers['Transfer-Encoding'] == exchange['response']['headers']['Transfer-Encoding']
    assert watch.lines == [line.replace(f': {requested} ({oldest})', f': {since} ({now})').encode()]


def test_version_answers_the_recorded_fields(version_server: tuple[str, ServerThread]) -> None:
    version, server = version_server
    recorded = recording(f'{version}/version')['response']['body']

    body: dict[str, Any] = Client(server.url).request('GET', '/version').body

    assert body.keys() == recorded.keys()
    assert (body['major'], body['minor']) == (recorded['major'], recorded['minor'])
