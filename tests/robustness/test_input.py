"""Guarantees 7 and 9: a slow reader bounds memory; hostile objects still make valid lines."""
import pathlib
import time
from typing import Any

import pytest

from tests.harness.driver import Driver
from tests.harness.operator import eventually, of
from tests.harness.probes import free_port, scrape, value
from tests.harness.truth import wait_until_consistent
from tests.robustness.conftest import Start

MIB = 1024 * 1024


def _hostile() -> dict[str, dict[str, Any]]:
    nested: dict[str, Any] = {'leaf': 'bottom'}
    for depth in range(150):
        nested = {f'level{depth}': nested}
    containers = [{'name': f'c{i}', 'image': f'registry.example/c{i}:1'} for i in range(500)]
    return {
        'huge-annotation': {'metadata': {'annotations': {'blob': 'x' * MIB}},
                            'spec': {'replicas': 1}},
        'emoji-labels': {'metadata': {'labels': {'team': 'café-☕', 'mood': '🚀🔥', 'ключ': 'значение'}},
                         'spec': {'replicas': 2, 'template': {'spec': {'containers': [
                             {'name': 'app', 'image': 'nginx:1.25'}]}}}},
        'no-status': {'metadata': {}, 'spec': {'replicas': 1}},
        'no-containers': {'metadata': {}, 'spec': {'template': {'spec': {}}}, 'status': {}},
        'nulls': {'metadata': {'labels': None, 'annotations': None}, 'spec': None, 'status': None},
        'wrong-types': {'metadata': {'labels': 'not-a-map'},
                        'spec': {'replicas': 'three', 'paused': 'yes',
                                 'template': {'spec': {'containers': 'not-a-list'}}},
                        'status': {'readyReplicas': None, 'observedGeneration': [1]}},
        'five-hundred-containers': {'metadata': {}, 'spec': {'replicas': 1, 'template': {
            'spec': {'containers': containers}}}},
        'deeply-nested': {'metadata': {}, 'spec': {'replicas': 1, 'template': {'metadata': nested}}},
    }


def test_hostile_objects_make_valid_lines_and_never_stop_the_stream(driver: Driver, start: Start) -> None:
    namespace = driver.namespace('hostile')
    driver.create(namespace, 'normal')
    operator = start(f'--namespace={namespace}', env={'DEPLOYWATCH_RESYNC_SECONDS': '0.5'})
    operator.wait_for(of('normal', 'ADDED'), what='ADDED')

    hostile = _hostile()
    for name, body in hostile.items():
        driver.inject(namespace, {'apiVersion': 'apps/v1', 'kind': 'Deployment',
                                  **body, 'metadata': {**body['metadata'], 'name': name}})
    # A normal object turned hostile is a MODIFIED with a diff into the odd shape.
    driver.inject(namespace, {'apiVersion': 'apps/v1', 'kind': 'Deployment',
                              'metadata': {'name': 'normal', 'uid': driver.truth_uid(namespace, 'normal')},
                              'spec': None})
    driver.create(namespace, 'sentinel')

    operator.wait_for(of('sentinel', 'ADDED'), what='the stream goes on after hostile objects')
    for name in hostile:
        event = operator.wait_for(of(name, 'ADDED'), what=f'ADDED of {name}')
        assert event['object']['metadata']['name'] == name  # every line was schema-validated too
    turned = operator.wait_for(of('normal', 'MODIFIED'), what='MODIFIED into null spec')
    assert turned['summary']['replicas'] == 1 and turned['object']['spec'] is None
    assert operator.wait_for(of('huge-annotation', 'RESYNC'), what='RESYNC of a 1 MiB object')
    assert operator.matching(of('emoji-labels'))[0]['object']['metadata']['labels']['mood'] == '🚀🔥'
    assert wait_until_consistent(operator, driver.truth) == []
    assert 'Traceback' not in operator.stderr


@pytest.mark.parametrize('changes', [3000])
def test_a_stuck_reader_blocks_the_writer_and_memory_stays_bounded(
        driver: Driver, start: Start, changes: int) -> None:
    namespace = driver.namespace('slow')
    names = [f'd{i:03d}' for i in range(100)]
    for name in names:
        driver.create(namespace, name, sidecar=True)
    operator = start(f'--namespace={namespace}', env={'DEPLOYWATCH_RESYNC_SECONDS': '0'})
    operator.wait_for_count(lambda e: e['type'] == 'ADDED', len(names), what='all ADDED')
    baseline = operator.rss_bytes()

    operator.pause_reading()
    peak = baseline
    for index in range(changes):
        driver.scale(namespace, names[index % len(names)], index % 7 + 1)
        if index % 100 == 0:
            peak = max(peak, operator.rss_bytes())
    for _ in range(20):  # and while it stays stuck, with everything sent
        time.sleep(0.1)
        peak = max(peak, operator.rss_bytes())
    stuck_at = len(operator.events)

    operator.resume_reading()
    assert wait_until_consistent(operator, driver.truth) == []
    printed = len(operator.events) - stuck_at
    # ~3,000 lines of ~8 KB each are ~24 MB of output, and several times that as Python
    # objects: buffering them would show. Blocking on the full pipe keeps them unread
    # in the server's watch buffer instead.
    assert printed > changes // 2, printed
    assert peak - baseline < 30 * MIB, (baseline, peak)


ODD_LINES = {  # what a broken server or proxy might send as a watch line, and why each is not an event
    'unhashable type': b'{"type":["ADDED"],"object":{}}\n',
    'no type': b'{"object":{"metadata":{"name":"x"}}}\n',
    'object not a map': b'{"type":"ADDED","object":5}\n',
    'not an object': b'[1,2,3]\n',
}


def test_watch_lines_that_are_not_events_are_broken_streams_resumed(driver: Driver, start: Start,
                                                                    tmp_path: pathlib.Path) -> None:
    """
    Issue 20, item 10: a line with an unhashable or missing type, or an object that is not a
    map, ended the watch loop (a TypeError or KeyError in the metrics, before any check) and
    with it the process. Each is a broken stream now, resumed from the last resourceVersion;
    an unknown type string is counted under one fixed label, never as a label of its own.
    """
    namespace = driver.namespace('odd')
    driver.create(namespace, 'web')
    port = free_port()
    driver.faults.send_odd_lines(*ODD_LINES.values(), b'{"type":"HOSTILE-LABEL","object":{}}\n')
    operator = start(f'--namespace={namespace}', env={'DEPLOYWATCH_RESYNC_SECONDS': '0',
                                                      'DEPLOYWATCH_METRICS_PORT': str(port)})
    operator.wait_for(of('web', 'ADDED'), what='ADDED')
    eventually(lambda: not driver.faults.odd_lines, what='every odd line sent, each to a watch of its own',
               timeout=60)
    version = driver.patch(namespace, 'web', {'metadata': {'labels': {'after': 'odd'}}})['metadata'][
        'resourceVersion']
    changed = operator.wait_for(lambda e: of('web', 'MODIFIED')(e) and e['resourceVersion'] == version,
                                what='the change after the odd lines', timeout=60)
    assert changed['object']['metadata']['labels']['after'] == 'odd'
    assert operator.process.poll() is None and 'Traceback' not in operator.stderr
    samples = scrape(port)
    assert value(samples, 'deploywatch_watch_restarts_total', {'reason': 'error'}) >= len(ODD_LINES)
    types = {dict(labels).get('type') for name, labels in samples if name == 'deploywatch_watch_events_total'}
    assert 'HOSTILE-LABEL' not in types and 'other' in types, types
    assert wait_until_consistent(operator, driver.truth) == []
