"""
Recording what a real kube-apiserver sends a label-selector watch, and answers a bad selector.

    python -m tests.emulator.record_selectors --kubeconfig /tmp/rk/kubeconfig \
        --out tests/emulator/recordings/v1.37

The companion of ``record.py`` (same server, same format), for two questions:

- ``watch-selector.json``: what does a watch with a ``labelSelector`` get when an
  object stops matching, and when it starts matching again? One Deployment
  (0 replicas) is created matching ``SELECTOR``, then labelled out of it and back
  in, twice (a changed value, then a label the selector forbids), annotated while
  out, and deleted. Two watches run across it all from one LIST's resourceVersion:
  the selector's (the file's ``request``/``response``) and an unfiltered one
  (``unfiltered``), which shows every write, the deployment controller's too. The
  ``steps`` are the writes, each with its answer; ``causes`` names, per change event
  of each watch, the step that caused it or ``<controller>``.
- ``selector-refused.json``: LISTs with selectors the server refuses, and one
  WATCH: the ``exchanges``, each a request and its answer.
- ``selector-matches.json``: which Deployments a LIST with each of ``MATCHES``
  answers, of ``LABELLED`` (their ``labels``; per selector, the ``names`` of the
  items answered, in order: the only part of each answer kept).

Nothing is normalised.
"""
import json
import pathlib
import sys
import urllib.parse

from tests.emulator.record import CONTROLLER, Obj, Server, Watch, command_line, until_settled

NAMESPACE = 'sel'
NAME = 'web'
BASE = f'/apis/apps/v1/namespaces/{NAMESPACE}/deployments'
SELECTOR = 'tier in (front,edge),!canary'
MERGE_PATCH = 'application/merge-patch+json'
# Each step's name, what it does, and its request (method, path, body).
STEPS: list[tuple[str, str, str, str, Obj | None]] = [
    ('create', 'created matching (tier=front)', 'POST', BASE, {
        'apiVersion': 'apps/v1', 'kind': 'Deployment',
        'metadata': {'name': NAME, 'labels': {'app': NAME, 'tier': 'front'}},
        'spec': {'replicas': 0, 'selector': {'matchLabels': {'app': NAME}},
                 'template': {'metadata': {'labels': {'app': NAME}},
                              'spec': {'containers': [{'name': 'c', 'image': 'nginx:1.25'}]}}}}),
    ('stop', 'tier=back: stops matching', 'PATCH', f'{BASE}/{NAME}',
     {'metadata': {'labels': {'tier': 'back'}}}),
    ('annotate', 'an annotation while it does not match', 'PATCH', f'{BASE}/{NAME}',
     {'metadata': {'annotations': {'example.com/note': 'out'}}}),
    ('start', 'tier=edge: matches again', 'PATCH', f'{BASE}/{NAME}',
     {'metadata': {'labels': {'tier': 'edge'}}}),
    ('canary', 'canary=yes: stops matching (!canary)', 'PATCH', f'{BASE}/{NAME}',
     {'metadata': {'labels': {'canary': 'yes'}}}),
    ('uncanary', 'canary removed: matches again', 'PATCH', f'{BASE}/{NAME}',
     {'metadata': {'labels': {'canary': None}}}),
    ('delete', 'deleted while matching', 'DELETE', f'{BASE}/{NAME}', None),
]
WATCH_SECONDS = 45  # long enough for every step
# Refused selectors: one of each kind of error (syntax, key, value, integer, several at once).
REFUSED = ['a b', 'a in (b', 'a/b/c', 'k' * 64, '_a', 'v=' + 'x' * 64, 'a=b_', 'a>b', 'a>b_',
           'a in (b_,c_)', 'a\x0bb']

# Labels to match: an empty value, integers and not, absent keys.
LABELLED = {'a': {'tier': 'front', 'n': '5'}, 'b': {'tier': 'back', 'n': '12'}, 'c': {'tier': '', 'n': 'x'},
            'd': {}, 'e': {'n': '03'}, 'f': {'n': '7', 'tier': 'edge'}}
MATCHES = ['tier', '!tier', 'tier=front', 'tier==front', 'tier!=front', 'tier in (front,back)',
           'tier notin (front)', 'tier in ()', 'tier=', 'tier!=', 'n>4', 'n<6', 'n>0', 'n<0', 'n>6',
           'tier in (front),n>4', 'in notin (in)', '']


def settled(server: Server, watch: Watch, *, gone: bool) -> None:
    """Until the deployment controller has observed the last write (or it was a delete), nothing new."""
    def observed() -> bool:
        if gone:
            return True
        obj = server.get(f'{BASE}/{NAME}')
        return bool(obj.get('status', {}).get('observedGeneration') == obj['metadata']['generation'])
    until_settled(watch, caught_up=observed)


def record(server: Server, out: pathlib.Path) -> None:
    version = server.get('/version')
    out.mkdir(parents=True, exist_ok=True)

    def save(name: str, data: Obj) -> None:
        (out / f'{name}.json').write_text(json.dumps({'note': data.pop('note'), 'server_version': version,
                                                      **data}, indent=1) + '\n')
        print(f'{out / name}.json', file=sys.stderr)

    namespace = {'apiVersion': 'v1', 'kind': 'Namespace', 'metadata': {'name': NAMESPACE}}
    assert server.exchange('POST', '/api/v1/namespaces', namespace)['response']['status'] in (201, 409)
    since = server.get(BASE)['metadata']['resourceVersion']
    query = f'watch=true&resourceVersion={since}&timeoutSeconds={WATCH_SECONDS}'
    filtered = Watch(server, f'{BASE}?{query}&labelSelector={urllib.parse.quote(SELECTOR)}')
    unfiltered = Watch(server, f'{BASE}?{query}')
    steps: list[Obj] = []
    causes: dict[str, list[str]] = {'filtered': [], 'unfiltered': []}
    for name, note, method, path, body in STEPS:
        before = {'filtered': filtered.changes(), 'unfiltered': unfiltered.changes()}
        content_type = MERGE_PATCH if method == 'PATCH' else 'application/json'
        exchange = server.exchange(method, path, body, content_type=content_type)
        assert exchange['response']['status'] in (200, 201), exchange
        steps.append({'name': name, 'note': note, **exchange})
        settled(server, unfiltered, gone=method == 'DELETE')
        for which, watch in (('filtered', filtered), ('unfiltered', unfiltered)):
            made = watch.changes() - before[which]
            # The step's own event comes first: the controller answers the write it saw.
            causes[which] += ([name] + [CONTROLLER] * (made - 1)) if made else []
    filtered.wait_for_end(WATCH_SECONDS + 10)
    unfiltered.wait_for_end(WATCH_SECONDS + 10)
    recorded = filtered.recording(
        f'a watch with labelSelector={SELECTOR!r} and an unfiltered one ("unfiltered"), from one LIST\'s '
        'resourceVersion, across the "steps" (each step\'s write and answer, the recorder waiting for the '
        'deployment controller to settle after each); "causes": per change event, the step that caused it '
        f'or {CONTROLLER}', causes=causes['filtered'], steps=steps, list_before=since)
    recorded['unfiltered'] = {'request': unfiltered.request, 'causes': causes['unfiltered'],
                              'response': unfiltered.recording('')['response']}
    save('watch-selector', recorded)

    paths = [f'{BASE}?labelSelector={urllib.parse.quote(s)}' for s in REFUSED]
    paths.append(f'{BASE}?watch=true&labelSelector={urllib.parse.quote(REFUSED[0])}')
    exchanges = [server.exchange('GET', path) for path in paths]
    assert all(e['response']['status'] == 400 for e in exchanges), exchanges
    note = ('LISTs with a labelSelector the server refuses, one of each kind of error, then a WATCH with '
            'the first: each request and its answer')
    save('selector-refused', {'note': note, 'exchanges': exchanges})


def record_matches(server: Server, out: pathlib.Path) -> None:
    """``selector-matches.json``: which of ``LABELLED`` each of ``MATCHES`` selects."""
    version = server.get('/version')
    namespace = f'{NAMESPACE}-match'
    base = f'/apis/apps/v1/namespaces/{namespace}/deployments'
    body = {'apiVersion': 'v1', 'kind': 'Namespace', 'metadata': {'name': namespace}}
    assert server.exchange('POST', '/api/v1/namespaces', body)['response']['status'] in (201, 409)
    for name, labels in LABELLED.items():
        deployment = json.loads(json.dumps(STEPS[0][4]))
        deployment['metadata'] = {'name': name, 'labels': labels}
        assert server.exchange('POST', base, deployment)['response']['status'] in (201, 409)
    answers = []
    for selector in MATCHES:
        exchange = server.exchange('GET', f'{base}?labelSelector={urllib.parse.quote(selector)}')
        assert exchange['response']['status'] == 200, exchange
        items = exchange['response']['body']['items']
        answers.append({'selector': selector, 'path': exchange['request']['path'],
                        'names': [item['metadata']['name'] for item in items]})
    note = f'LISTs in {namespace} of the Deployments "labelled" so, with each selector: the names answered'
    data = {'note': note, 'server_version': version, 'labelled': LABELLED, 'answers': answers}
    (out / 'selector-matches.json').write_text(json.dumps(data, indent=1) + '\n')
    print(f'{out}/selector-matches.json', file=sys.stderr)


def main(argv: list[str] | None = None) -> None:
    args = command_line(module='tests.emulator.record_selectors', doc=__doc__).parse_args(argv)
    record(Server(args.kubeconfig), args.out)
    record_matches(Server(args.kubeconfig), args.out)


if __name__ == '__main__':
    main()
