"""
SIGTERM wins, whatever the watch loop is doing (issue 20, item 1).

While stdout is behind, deploywatch pauses its Deployment watches through Kopf's pause
toggle; a watch request still in flight is cancelled, or its response closed. Kopf's
cancellation at SIGTERM could be taken for that pause and swallowed (``streaming._stream``;
its unit test in tests/unit/test_streaming.py failed before the fix). Through the real
process these two scenarios exited in time before the fix too: they guard the promise
(exit 0 within a pod's grace period), the unit test pins the cause.
"""
import pathlib
import signal
import urllib.error

import pytest

from deploywatch.output import HARD_LIMIT
from deploywatch.testing import ServerThread, factory
from tests.conftest import OPERATOR_TOKEN
from tests.harness.driver import Driver
from tests.harness.operator import eventually, of
from tests.harness.probes import free_port, healthz, scrape, value
from tests.harness.proxy import Proxy
from tests.robustness.conftest import Start

GRACE = 30.0  # the manifests' terminationGracePeriodSeconds: what a pod gets before SIGKILL


def _pending(port: int) -> float:
    """Bytes waiting to be written, from /metrics; 0 until it is served."""
    try:
        return value(scrape(port), 'deploywatch_stdout_pending_bytes')
    except urllib.error.URLError:
        return 0.0


def _big(driver: Driver, namespace: str, count: int) -> None:
    for index in range(count):  # ~200 KB a line: far past what stdout and the spool take
        body = factory.deployment(f'big-{index}', namespace=namespace)
        body['metadata']['annotations'] = {'blob': str(index % 10) * 200_000}
        driver.inject(namespace, body)


@pytest.mark.parametrize('when', ['between watches', 'a watch request in flight'])
def test_sigterm_while_behind_ends_the_process(apiserver: ServerThread, driver: Driver, start: Start,
                                               tmp_path: pathlib.Path, when: str) -> None:
    namespace = driver.namespace('behind')
    driver.create(namespace, 'first')
    with Proxy(apiserver.url) as proxy:
        kubeconfig = apiserver.kubeconfig(tmp_path / 'proxied.kubeconfig', token=OPERATOR_TOKEN)
        kubeconfig.write_text(kubeconfig.read_text().replace(apiserver.url, proxy.url))
        operator = start(f'--namespace={namespace}', env={'DEPLOYWATCH_RESYNC_SECONDS': '0.5'},
                         kubeconfig=kubeconfig)
        operator.wait_for(of('first', 'ADDED'), what='ADDED')
        if when == 'between watches':  # the watch itself brings what fills stdout
            operator.pause_reading()
            _big(driver, namespace, 100)
        else:  # RESYNC rounds fill stdout while a watch request waits for its answer
            _big(driver, namespace, 100)
            operator.wait_for_count(lambda e: e['type'] == 'ADDED', 101, what='every ADDED read')
            proxy.hold()  # a silent partition: the next request gets no answer
            opened = proxy.connections
            proxy.cut()  # the watch ends; the one that resumes it is held
            proxy.wait_for_connections(opened + 1)
            operator.pause_reading()
        eventually(lambda: 'stdout is not keeping up' in operator.stderr, what='the watches paused')

        operator.process.send_signal(signal.SIGTERM)
        code = operator.process.wait(timeout=GRACE)
    assert code == 0, operator.stderr[-3000:]
    assert 'Streaming tasks are not stopped' not in operator.stderr
    assert 'Exception in callback' not in operator.stderr, operator.stderr[-3000:]


def test_a_listing_past_the_hard_limit_leaves_the_loop_turning(driver: Driver, start: Start) -> None:
    """
    Issue 20, item 9: a listing does not stop for the watch pause, so with nobody reading it
    fills the writer up to its hard limit, where the delivery of each object must wait for the
    reader. The wait held the event loop itself before: the liveness probe did not answer and
    SIGTERM was not handled until the reader came back (a pod's SIGKILL). /metrics is served
    by a thread of its own, so it tells when the limit is reached either way.
    """
    namespace = driver.namespace('hard')
    _big(driver, namespace, 100)  # 20 MB of lines: past HARD_LIMIT (16 MiB)
    liveness, metrics = free_port(), free_port()
    operator = start(f'--namespace={namespace}', f'--liveness=http://127.0.0.1:{liveness}/healthz',
                     env={'DEPLOYWATCH_RESYNC_SECONDS': '0', 'DEPLOYWATCH_METRICS_PORT': str(metrics)})
    operator.pause_reading()
    eventually(lambda: _pending(metrics) > HARD_LIMIT, what='the listing at the hard limit')

    assert healthz(liveness)[0] == 200  # the loop answers while the listing waits for room

    operator.process.send_signal(signal.SIGTERM)
    assert operator.process.wait(timeout=GRACE) == 0, operator.stderr[-3000:]
    assert 'were not written before stopping' in operator.stderr
