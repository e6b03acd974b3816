"""
The emulated API server answers as the real kube-apiserver v1.24 did in ``recordings/``.

These recordings (the top of ``recordings/``) are of v1.24, so the emulator answers as
v1.24 here (``VERSION``); ``test_real_writes`` and ``test_recorded_bookmarks`` replay the
newer ones.

Every test replays recorded requests against a fresh emulator and compares the
answers with the recorded ones. Only what is specific to one run is normalised
(see ``replay.normalise``): uids, timestamps, resourceVersion numbers (their
order and equalities are checked instead), the contents of ``managedFields``
(the managers are compared) and continue-token bytes (their structure is
compared). Statuses, Status bodies, defaulting, generations, finalizers,
deletion, pagination and the watch stream, line by line, are compared as is.

The deployment controller and the garbage collector, which changed objects in
the recorded cluster, are played by the tests with the requests they send
(``Client.write_status``, ``Client.remove_foreground_finalizer``), so the
emulator runs without its own garbage collector and nothing races the replay.
"""
import base64
import json
import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import pytest

from deploywatch.testing import ApiServer, Rule, ServerThread, User, factory, versions
from tests.emulator.replay import (
    BASE,
    MERGE_PATCH,
    Client,
    Obj,
    Response,
    Watch,
    normalise,
    recorded_events,
    recording,
)

VERSION = versions.V1_24  # what recorded these
READ_ONLY_TOKEN = 'read-only-token'
BOOKMARK_INTERVAL = 0.2
UUID = re.compile(r'[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}')


@pytest.fixture
def server() -> Iterator[ServerThread]:
    api = ApiServer(bookmark_interval=BOOKMARK_INTERVAL, version=VERSION)
    reader = Rule(frozenset({'get', 'list', 'watch'}), frozenset({'apps'}), frozenset({'deployments'}))
    api.add_user(User('deploywatch', READ_ONLY_TOKEN, (reader,)))
    with ServerThread(api, garbage_collector=False) as thread:
        yield thread


@pytest.fixture
def client(server: ServerThread) -> Client:
    client = Client(server.url)
    assert client.request('POST', '/api/v1/namespaces', factory.namespace('rec')).status == 201
    return client


def current_version(client: Client) -> str:
    version: str = client.request('GET', BASE).body['metadata']['resourceVersion']
    return version


def with_query(path: str, **params: str) -> str:
    """A recorded path with some query parameters' values replaced (the run-specific ones)."""
    for name, value in params.items():
        path, count = re.subn(rf'([?&]{name}=)[^&]*', rf'\g<1>{value}', path)
        assert count == 1, (name, path)
    return path


def compact(obj: Any) -> bytes:
    """The wire form of a watch event or body: compact JSON, as Go's encoder writes it."""
    return json.dumps(obj, separators=(',', ':')).encode()


def assert_headers(headers: Mapping[str, str], recorded: Mapping[str, str], *, watch: bool = False) -> None:
    """The recorded headers: Content-Type as is, an Audit-Id (a uuid per request), and for a
    watch, chunked. (Go also chunks any other body longer than its buffer; nothing depends on it.)"""
    assert recorded.keys() <= {'Audit-Id', 'Content-Type', 'Transfer-Encoding'}
    assert headers['Content-Type'] == recorded['Content-Type']
    assert UUID.fullmatch(recorded['Audit-Id']) and UUID.fullmatch(headers['Audit-Id'])
    if watch:
        assert headers['Transfer-Encoding'] == recorded['Transfer-Encoding'] == 'chunked'


def assert_like_recorded(name: str, response: Response) -> None:
    recorded = recording(name)['response']
    assert response.status == recorded['status'], response.raw
    assert_headers(response.headers, recorded['headers'])
    assert normalise(response.body) == normalise(recorded['body'])


def create_body(name: str) -> Obj:
    """The recorder's create request (``conflict.json``, for d0) for another name."""
    text = json.dumps(recording('conflict')['request']['body']).replace('"d0"', json.dumps(name))
    body: Obj = json.loads(text)
    return body


def seed(client: Client, items: list[Obj]) -> None:
    """Create recorded LIST items as the recorder did, and let the controller write their status."""
    for item in items:
        name = item['metadata']['name']
        assert client.request('POST', BASE, create_body(name)).status == 201
        assert client.write_status(name, item).status == 200


# -- discovery -----------------------------------------------------------------------------------

@pytest.mark.parametrize('name', ['discovery-api', 'discovery-core-v1', 'discovery-apis',
                                  'discovery-apps-v1'])
def test_discovery_bodies_are_the_recorded_ones(client: Client, name: str) -> None:
    response = client.replay(name)
    recorded = recording(name)['response']
    assert response.status == recorded['status'] == 200
    assert_headers(response.headers, recorded['headers'])
    assert response.body == recorded['body']


# -- writes --------------------------------------------------------------------------------------

@pytest.mark.parametrize('name', ['create', 'create-with-finalizer', 'create-foreground'])
def test_create_defaults_the_object_as_recorded(client: Client, name: str) -> None:
    response = client.replay(name)

    assert_like_recorded(name, response)  # defaulting, generation 1, status {}, finalizers, managers
    body = response.body
    assert body['metadata']['generation'] == 1 and body['status'] == {}
    assert client.get(body['metadata']['name']) == body


def test_plain_delete_answers_a_success_status_with_the_uid(client: Client) -> None:
    created = client.replay('create').body

    response = client.replay('delete-plain')

    recorded = recording('delete-plain')['response']
    assert response.status == recorded['status'] == 200
    assert_headers(response.headers, recorded['headers'])
    expected = recorded['body']
    expected['details']['uid'] = created['metadata']['uid']
    assert response.body == expected
    assert client.request('GET', f'{BASE}/w1').status == 404


@pytest.mark.parametrize(('create', 'delete', 'finalizers'), [
    ('create-with-finalizer', 'delete-with-finalizer', ['example.com/hold']),
    ('create-foreground', 'delete-foreground', ['foregroundDeletion']),
])
def test_delete_held_by_a_finalizer_answers_the_object_marked_for_deletion(
        client: Client, create: str, delete: str, finalizers: list[str]) -> None:
    created = client.replay(create).body

    response = client.replay(delete)

    assert_like_recorded(delete, response)
    metadata = response.body['metadata']
    assert metadata['finalizers'] == finalizers
    assert metadata['generation'] == 2  # bumped by the deletion, as recorded
    assert metadata['deletionGracePeriodSeconds'] == 0 and 'deletionTimestamp' in metadata
    assert metadata['uid'] == created['metadata']['uid']
    assert int(metadata['resourceVersion']) > int(created['metadata']['resourceVersion'])
    assert client.get(metadata['name']) == response.body
    # Deleting again changes nothing: same object, no new version.
    assert client.replay(delete).body == response.body


def test_merge_patch_of_the_spec_moves_the_generation(client: Client) -> None:
    created = client.replay('create').body

    response = client.replay('patch-merge-scale')

    assert_like_recorded('patch-merge-scale', response)
    assert response.body['metadata']['generation'] == 2
    assert response.body['spec']['replicas'] == 2
    assert int(response.body['metadata']['resourceVersion']) > int(created['metadata']['resourceVersion'])


def test_removing_the_last_finalizer_answers_the_patched_object_and_deletes_it(client: Client) -> None:
    client.replay('create-with-finalizer')
    deleting = client.replay('delete-with-finalizer').body

    response = client.replay('patch-remove-finalizer')

    # The apiserver answers the object as patched (no finalizers, the version it was patched at),
    # not the stored one it then deletes (that one is what the watch's DELETED carries).
    assert_like_recorded('patch-remove-finalizer', response)
    assert 'finalizers' not in response.body['metadata']
    assert response.body['metadata']['resourceVersion'] == deleting['metadata']['resourceVersion']
    assert client.request('GET', f'{BASE}/w2').status == 404


def test_a_resource_version_in_a_patch_is_a_precondition(client: Client) -> None:
    """Not recorded: how the garbage collector's rv-guarded merge patches stay safe."""
    created = client.replay('create').body
    client.replay('patch-merge-scale')
    stale = {'metadata': {'resourceVersion': created['metadata']['resourceVersion'], 'labels': {'x': 'y'}}}

    response = client.request('PATCH', f'{BASE}/w1', stale, content_type=MERGE_PATCH)

    assert response.status == 409
    assert response.body['reason'] == 'Conflict'
    assert 'x' not in client.get('w1')['metadata']['labels']


# -- errors --------------------------------------------------------------------------------------

def test_not_found_status(client: Client) -> None:
    assert_like_recorded('not-found', client.replay('not-found'))


def test_already_exists_status(client: Client) -> None:
    assert client.replay('conflict').status == 201
    assert_like_recorded('conflict', client.replay('conflict'))


def test_forbidden_status_for_a_read_only_user(server: ServerThread, client: Client) -> None:
    reader = Client(server.url, READ_ONLY_TOKEN)

    assert_like_recorded('forbidden-create', reader.replay('forbidden-create'))
    assert reader.request('GET', BASE).status == 200
    assert client.request('GET', f'{BASE}/nope').status == 404  # nothing was created


def test_exact_list_at_a_compacted_version_is_410(server: ServerThread, client: Client) -> None:
    client.request('POST', BASE, create_body('d0'))
    before = current_version(client)
    client.request('POST', BASE, create_body('d1'))
    server.call(server.server.store.compact)
    path = recording('list-too-old-410')['request']['path']

    assert_like_recorded('list-too-old-410', client.request('GET', with_query(path, resourceVersion=before)))
    # The version the history was compacted at can still be listed exactly.
    now = current_version(client)
    exact = client.request('GET', with_query(path, resourceVersion=now))
    assert exact.status == 200
    assert [item['metadata']['name'] for item in exact.body['items']] == ['d0', 'd1']


# -- lists ---------------------------------------------------------------------------------------

def test_list_items_have_no_kind_and_the_list_has_the_current_version(
        server: ServerThread, client: Client) -> None:
    recorded = recording('list-all')['response']
    seed(client, recorded['body']['items'])

    response = client.replay('list-all')

    assert response.status == recorded['status'] == 200
    assert_headers(response.headers, recorded['headers'])
    body = response.body
    assert [body['kind'], body['apiVersion']] == [recorded['body']['kind'], recorded['body']['apiVersion']]
    assert body['metadata'].keys() == recorded['body']['metadata'].keys() == {'resourceVersion'}
    # The list's version is the store's current one, which no item's is newer than.
    store = server.server.store
    assert body['metadata']['resourceVersion'] == str(server.call(lambda: store.resource_version))
    for listed in (body, recorded['body']):
        versions = [int(i['metadata']['resourceVersion']) for i in listed['items']]
        assert int(listed['metadata']['resourceVersion']) >= max(versions)
    assert [normalise(i) for i in body['items']] == [normalise(i) for i in recorded['body']['items']]
    assert all('kind' not in i and 'apiVersion' not in i for i in body['items'])


def continue_json(token: str) -> bytes:
    """What a continue token encodes (base64url; Go's has no padding)."""
    return base64.urlsafe_b64decode(token + '=' * (-len(token) % 4))


def test_pages_are_served_from_the_first_pages_snapshot(client: Client) -> None:
    page1 = recording('list-page1')['response']
    page2 = recording('list-page2')['response']
    seed(client, page1['body']['items'] + page2['body']['items'])
    version = current_version(client)

    first = client.replay('list-page1')

    assert first.status == page1['status'] == 200
    assert_headers(first.headers, page1['headers'])
    assert [normalise(i) for i in first.body['items']] == [normalise(i) for i in page1['body']['items']]
    metadata = first.body['metadata']
    assert metadata.keys() == page1['body']['metadata'].keys()
    assert metadata['resourceVersion'] == version and metadata['remainingItemCount'] == 1
    # The token encodes the same JSON as the recorded one, byte for byte, but for the version.
    recorded_token = page1['body']['metadata']['continue']
    assert continue_json(recorded_token) == b'{"v":"meta.k8s.io/v1","rv":1474,"start":"d1\\u0000"}'
    assert continue_json(metadata['continue']) == continue_json(recorded_token).replace(
        b'1474', version.encode())
    assert '=' not in metadata['continue']

    # Between the pages: d2 is scaled, d0 deleted, d3 created. Page 2 still shows the snapshot.
    scale = {'spec': {'replicas': 5}}
    assert client.request('PATCH', f'{BASE}/d2', scale, content_type=MERGE_PATCH).status == 200
    assert client.request('DELETE', f'{BASE}/d0').status == 200
    assert client.request('POST', BASE, create_body('d3')).status == 201
    page2_path = recording('list-page2')['request']['path']
    assert page2_path.startswith(f'{BASE}?limit=2&continue=')

    second = client.request('GET', with_query(page2_path, **{'continue': metadata['continue']}))

    assert second.status == page2['status'] == 200
    assert_headers(second.headers, page2['headers'])
    assert second.body['metadata'] == {'resourceVersion': version}  # no continue, nothing remaining
    assert page2['body']['metadata'].keys() == {'resourceVersion'}
    assert [normalise(i) for i in second.body['items']] == [normalise(i) for i in page2['body']['items']]
    assert second.body['items'][0]['spec']['replicas'] == 1
    # A new list sees the changes.
    latest = client.request('GET', BASE).body
    assert [(i['metadata']['name'], i['spec']['replicas']) for i in latest['items']] == [
        ('d1', 1), ('d2', 5), ('d3', 1)]


def test_a_filtered_page_does_not_count_the_remaining_items(client: Client) -> None:
    """Not recorded: etcd3's GetList sets remainingItemCount only without a selector."""
    seed(client, recording('list-all')['response']['body']['items'])

    body = client.request('GET', f'{BASE}?limit=2&labelSelector=app%20in%20(d0,d1,d2)').body

    assert len(body['items']) == 2 and 'continue' in body['metadata']
    assert 'remainingItemCount' not in body['metadata']


# -- watches -------------------------------------------------------------------------------------

# What caused each change recorded in watch-stream.json, in order: a recorded request, the
# deployment controller writing the status it recorded (STATUS), or the garbage collector (GC).
STATUS, GC = '<status>', '<gc>'
WATCH_STREAM_CAUSES = [
    'create', 'patch-merge-scale', STATUS, STATUS, STATUS, STATUS, 'delete-plain',
    'create-with-finalizer', 'delete-with-finalizer', STATUS, 'patch-remove-finalizer',
    'create-foreground', 'delete-foreground', STATUS, STATUS, STATUS, GC,
]


def play(client: Client, changes: list[Obj], causes: Sequence[str | Obj]) -> None:
    """Cause the recorded changes again, in the recorded order (a dict cause: a merge patch)."""
    for event, cause in zip(changes, causes, strict=True):
        name = event['object']['metadata']['name']
        if cause == STATUS:
            response = client.write_status(name, event['object'])
        elif cause == GC:
            response = client.remove_foreground_finalizer(name)
        elif isinstance(cause, dict):
            response = client.request('PATCH', f'{BASE}/{name}', cause, content_type=MERGE_PATCH)
        else:
            request = recording(cause)['request']
            assert request['method'] == 'POST' or request['path'].endswith(f'/{name}'), (cause, name)
            response = client.replay(cause)
        assert response.status in (200, 201), (cause, response.raw)


def changes_of(events: list[Obj]) -> list[Obj]:
    return [event for event in events if event['type'] != 'BOOKMARK']


def version(event: Obj) -> int:
    return int(event['object']['metadata']['resourceVersion'])


def assert_events_like_recorded(actual: list[Obj], recorded: list[Obj]) -> None:
    """Same events, objects equal but for run-specific values; versions increase; one uid per name."""
    assert [(e['type'], e['object']['metadata']['name']) for e in actual] == [
        (e['type'], e['object']['metadata']['name']) for e in recorded]
    for index, (mine, theirs) in enumerate(zip(actual, recorded, strict=True)):
        assert normalise(mine['object']) == normalise(theirs['object']), f'event {index}: {mine["type"]}'
    for events in (actual, recorded):
        versions = [version(e) for e in events]
        assert versions == sorted(set(versions)), versions
        uids: dict[str, str] = {}
        for event in events:
            metadata = event['object']['metadata']
            assert uids.setdefault(metadata['name'], metadata['uid']) == metadata['uid']


def test_watch_stream_replays_like_the_recorded_one(server: ServerThread, client: Client) -> None:
    exchange = recording('watch-stream')
    recorded_lines = [line.encode() for line in exchange['response']['stream_lines']]
    recorded = [json.loads(line) for line in recorded_lines]
    since = current_version(client)
    watch = Watch(server.url, with_query(exchange['request']['path'], resourceVersion=since))
    try:
        play(client, changes_of(recorded), WATCH_STREAM_CAUSES)
        watch.wait(lambda events: len(changes_of(events)) >= len(changes_of(recorded))
                   and events[-1]['type'] == 'BOOKMARK', what='every change, then a BOOKMARK')
    finally:
        watch.close()

    assert watch.status == exchange['response']['status'] == 200
    assert_headers(watch.headers, exchange['response']['headers'], watch=True)
    events = watch.events
    changes = changes_of(events)
    assert_events_like_recorded(changes, changes_of(recorded))

    # The DELETED events carry the object as it was stored, at a version of their own.
    for name, finalizers in (('w1', None), ('w2', ['example.com/hold']), ('w3', ['foregroundDeletion'])):
        mine = [e for e in changes if e['object']['metadata']['name'] == name]
        deleted, = (e for e in mine if e['type'] == 'DELETED')
        *_, modified = (e for e in mine if e['type'] == 'MODIFIED')
        assert deleted['object']['metadata'].get('finalizers') == finalizers
        assert ('deletionTimestamp' in deleted['object']['metadata']) == (finalizers is not None)
        assert version(deleted) > version(modified)

    # BOOKMARKs: the recorded object but for its version, which never goes back, and which is
    # the last change's once everything has happened (as 1541 is in the recording).
    recorded_bookmark = recorded[-1]
    assert recorded_bookmark['type'] == 'BOOKMARK' and version(recorded_bookmark) == version(recorded[-3])
    assert [version(e) for e in events] == sorted(version(e) for e in events)
    for event in events:
        if event['type'] == 'BOOKMARK':
            expected = json.loads(json.dumps(recorded_bookmark))
            expected['object']['metadata']['resourceVersion'] = str(version(event))
            assert event == expected
    assert version(events[-1]) == version(changes[-1])

    # The wire format: compact JSON, one event per line, each line "\n"-terminated and its own
    # chunk; a BOOKMARK line is the recorded one byte for byte, but for the version.
    for line in recorded_lines + watch.lines:
        assert line == compact(json.loads(line)) + b'\n'
    assert watch.chunks == watch.lines
    assert watch.lines[-1] == recorded_lines[-1].replace(
        f'"resourceVersion":"{version(recorded_bookmark)}"'.encode(),
        f'"resourceVersion":"{version(events[-1])}"'.encode())


def test_watch_from_a_version_compacted_in_etcd_but_still_cached_replays_the_changes(
        server: ServerThread, client: Client) -> None:
    exchange = recording('watch-compacted-but-cached')
    recorded = recorded_events('watch-compacted-but-cached')
    assert changes_of(recorded) == recorded
    # The same changes as watch-stream.json, then d0 (created before the watched version) is
    # scaled four times, and the controller writes its status after each.
    d0 = [e['object'] for e in recorded if e['object']['metadata']['name'] == 'd0']
    seed(client, d0[:1])
    since = current_version(client)
    causes: list[str | Obj] = list(WATCH_STREAM_CAUSES)
    generation = 1
    for obj in d0:
        scaled = obj['metadata']['generation'] != generation
        causes.append({'spec': {'replicas': obj['spec']['replicas']}} if scaled else STATUS)
        generation = obj['metadata']['generation']
    play(client, recorded, causes)
    # etcd compacts (an exact LIST at the version is 410, as in list-too-old-410.json at the same
    # version), but the watch cache still has the changes.
    server.call(server.server.store.compact, keep_watch_cache=True)
    assert client.request('GET', f'{BASE}?resourceVersion={since}&resourceVersionMatch=Exact').status == 410

    watch = Watch(server.url, with_query(exchange['request']['path'], resourceVersion=since))
    try:
        watch.wait(lambda events: any(e['type'] == 'BOOKMARK' for e in events), what='a BOOKMARK')
    finally:
        watch.close()

    assert watch.status == exchange['response']['status'] == 200
    assert_headers(watch.headers, exchange['response']['headers'], watch=True)
    assert_events_like_recorded(changes_of(watch.events), recorded)


def test_watch_from_a_too_old_version_is_one_error_event(server: ServerThread, client: Client) -> None:
    exchange = recording('watch-too-old-410')
    client.request('POST', BASE, create_body('d0'))
    server.call(server.server.store.compact)
    oldest = current_version(client)
    recorded_line = exchange['response']['stream_lines'][0].encode()

    watch = Watch(server.url, exchange['request']['path'])  # resourceVersion=5, as recorded
    watch.wait_for_end(timeout=1.0)  # at once, not after the request's timeoutSeconds=3

    assert watch.status == exchange['response']['status'] == 200
    assert_headers(watch.headers, exchange['response']['headers'], watch=True)
    assert re.fullmatch(rb'\{"type":"ERROR",.*"too old resource version: 5 \(1200\)".*\n', recorded_line)
    assert watch.lines == [recorded_line.replace(b'(1200)', f'({oldest})'.encode())]
    assert watch.chunks == watch.lines

    # The version in parentheses is the oldest one a watch may start from: it is served (a
    # BOOKMARK would only come after a change, v1.*/watch-bookmarks-*.json, so make one).
    watch = Watch(server.url, f'{BASE}?watch=true&allowWatchBookmarks=true&resourceVersion={oldest}')
    try:
        client.request('POST', BASE, create_body('d1'))
        watch.wait(lambda events: events != [], what='the first event')
    finally:
        watch.close()
    assert [(e['type'], e['object']['metadata']['name']) for e in watch.events[:1]] == [('ADDED', 'd1')]
    older = int(oldest) - 1
    watch = Watch(server.url, f'{BASE}?watch=true&resourceVersion={older}')
    watch.wait_for_end(timeout=1.0)
    assert [e['object']['message'] for e in watch.events] == [f'too old resource version: {older} ({oldest})']


def test_the_emulators_garbage_collector_finishes_a_foreground_delete_as_recorded() -> None:
    recorded = [e for e in recorded_events('watch-stream') if e['object']['metadata'].get('name') == 'w3']
    # With its own garbage collector, as the operator's tests run it.
    with ServerThread(ApiServer(version=VERSION)) as server:
        client = Client(server.url)
        client.request('POST', '/api/v1/namespaces', factory.namespace('rec'))
        since = current_version(client)
        watch = Watch(server.url, f'{BASE}?watch=true&resourceVersion={since}')
        try:
            client.replay('create-foreground')
            client.replay('delete-foreground')
            watch.wait(lambda events: len(events) == 3, what='ADDED, MODIFIED, DELETED')
        finally:
            watch.close()

    # As recorded, but without what the deployment controller wrote in between.
    deleted = json.loads(json.dumps(recorded[-1]))
    deleted['object']['status'] = {}
    del deleted['object']['metadata']['annotations']
    deleted['object']['metadata']['managedFields'] = recorded[0]['object']['metadata']['managedFields']
    assert_events_like_recorded(watch.events, [recorded[0], recorded[1], deleted])
