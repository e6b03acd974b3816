"""
A reader slower than the events: memory stays bounded, the event loop keeps serving.

The lines wait in a bounded spool written by a thread (deploywatch.output.spool); past its
bound the Deployment watches pause, so the unread changes wait in the API server. The
loop itself is never blocked while watching, so Kopf's liveness endpoint answers
(and a peering keep-alive would be sent) while stdout is stuck.
"""
import socket
import time
import urllib.request

import pytest

from tests.harness.driver import Driver
from tests.harness.reporting import report
from tests.harness.truth import wait_until_consistent
from tests.robustness.conftest import Start

MIB = 1024 * 1024


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(('127.0.0.1', 0))
        port: int = probe.getsockname()[1]
        return port


def _alive(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:
            return bool(answer.status == 200)
    except OSError:
        return False


def test_liveness_answers_and_memory_stays_bounded_while_stdout_is_stuck(
        driver: Driver, start: Start, request: pytest.FixtureRequest) -> None:
    namespace = driver.namespace('stuck')
    names = [f'd{i:03d}' for i in range(100)]
    for name in names:
        driver.create(namespace, name, sidecar=True)
    port = _free_port()
    url = f'http://127.0.0.1:{port}/healthz'
    operator = start(f'--namespace={namespace}', f'--liveness=http://127.0.0.1:{port}/healthz',
                     env={'DEPLOYWATCH_RESYNC_SECONDS': '0'})
    operator.wait_for_count(lambda e: e['type'] == 'ADDED', len(names), what='all ADDED')
    assert _alive(url)
    baseline = operator.rss_bytes()

    operator.pause_reading()
    changes = 1000  # lines of ~13 KB (object, old and diff of a 1.5 KB note): ~13 MB, over the 4 MiB bound
    peak, answers = baseline, []
    for index in range(changes):
        note = {'metadata': {'annotations': {'note': f'{index}-' + 'x' * 1500}}}
        driver.patch(namespace, names[index % len(names)], note)
        if index % 100 == 99:
            peak = max(peak, operator.rss_bytes())
            answers.append(_alive(url))
    for _ in range(10):  # and while it stays stuck, with everything sent
        time.sleep(0.1)
        peak = max(peak, operator.rss_bytes())
    answers.append(_alive(url))
    stuck_at = len(operator.events)
    assert all(answers), answers
    assert 'stdout is not keeping up' in operator.stderr

    operator.resume_reading()
    assert wait_until_consistent(operator, driver.truth) == []
    printed = len(operator.events) - stuck_at
    report(request.config, 'slow reader', {'changes': changes, 'printed after the reader resumed': printed,
                                           'liveness answers while stuck': f'{sum(answers)}/{len(answers)}',
                                           'RSS growth while stuck (MiB)': round((peak - baseline) / MIB, 1)})
    assert printed > changes // 2  # resumed from where the watch paused
    assert peak - baseline < 30 * MIB, (baseline, peak)
    assert 'stdout is keeping up again' in operator.stderr
    assert 'Traceback' not in operator.stderr
