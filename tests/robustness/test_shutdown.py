"""
SIGTERM wins, whatever the watch loop is doing (issue 20, item 1).

While stdout is behind, deploywatch pauses its Deployment watches through Kopf's pause
toggle; a watch request still in flight is cancelled, or its response closed. Kopf's
cancellation at SIGTERM was taken for that pause and swallowed (``streaming._stream``),
so the watch loop went on, waiting for the reader, and the process never exited: a pod's
SIGKILL. It takes a watch request that is still waiting for its answer when the pause
comes: the proxy holds one (a silent partition), and a SIGTERM after the pause then hung
the process before the fix (its unit test in tests/unit/test_streaming.py pins the cause).
``RUN.fail()`` stops the process with the same SIGTERM, so a failure while stdout is
behind must end it too, with status 1.

Each scenario runs against the emulator and, with DEPLOYWATCH_E2E_KUBECONFIG, a real
kube-apiserver: the proxy forwards TLS untouched, and the server's certificate names
127.0.0.1, the proxy's address too.
"""
import pathlib
import shutil
import signal
import urllib.error

import pytest

from deploywatch.output.spool import HARD_LIMIT
from deploywatch.testing import factory
from tests.conftest import StartOperator
from tests.harness import identity
from tests.harness.clusters import Cluster
from tests.harness.driver import Driver
from tests.harness.operator import OperatorProcess, eventually, of
from tests.harness.probes import free_port, healthz, scrape, value
from tests.harness.proxy import Proxy
from tests.robustness.conftest import Start

GRACE = 30.0  # the manifests' terminationGracePeriodSeconds: what a pod gets before SIGKILL
FAILURE_EXIT = 1  # README, "Exit status": an ERROR on stderr stopped it
BLOB = 200_000  # bytes of annotation a Deployment: a real server takes 256 KiB of them in all
BIG = 30  # ~6 MB of lines: past the writer's high-water mark (4 MiB) and any pipe
BEHIND, CAUGHT_UP = 'stdout is not keeping up', 'stdout is keeping up again'


def _pending(port: int) -> float:
    """Bytes waiting to be written, from /metrics; 0 until it is served."""
    try:
        return value(scrape(port), 'deploywatch_stdout_pending_bytes')
    except urllib.error.URLError:
        return 0.0


def _big(driver: Driver, namespace: str, count: int) -> None:
    for index in range(count):  # ~200 KB a line: far past what stdout and the spool take
        body = factory.deployment(f'big-{index}', namespace=namespace)
        body['metadata']['annotations'] = {'blob': str(index % 10) * BLOB}
        driver.inject(namespace, body)


def _behind(operator: OperatorProcess) -> bool:
    """
    Whether the watches are paused for stdout now: the writer's last word on it is that it is
    behind. With the reader paused it stays so, whatever came before (pauses come and go
    while a reader takes RESYNC rounds more slowly than they come).
    """
    said = [line for line in operator.stderr.splitlines() if BEHIND in line or CAUGHT_UP in line]
    return bool(said) and BEHIND in said[-1]


@pytest.mark.parametrize('when', ['between watches', 'a watch request in flight'])
def test_sigterm_while_behind_ends_the_process(cluster: Cluster, start_operator: StartOperator,
                                               tmp_path: pathlib.Path, when: str) -> None:
    namespace = cluster.new_namespace('behind')
    cluster.create(factory.deployment('first', namespace=namespace, replicas=0))
    with Proxy(identity.server_of(cluster.kubeconfig)) as proxy:
        kubeconfig = cluster.operator_kubeconfig(tmp_path / 'proxied.kubeconfig', server=proxy.url)
        operator = start_operator(f'--namespace={namespace}', '--debug',  # Kopf's stop logs are DEBUG
                                  env={'DEPLOYWATCH_RESYNC_SECONDS': '0.5'}, kubeconfig=kubeconfig)
        operator.wait_for(of('first', 'ADDED'), what='ADDED')
        if when == 'between watches':  # the watch itself brings what fills stdout, then closes
            operator.pause_reading()
            cluster.create_big(namespace, BIG, size=BLOB)
        else:  # RESYNC rounds fill stdout while a watch request waits for its answer
            cluster.create_big(namespace, BIG, size=BLOB)
            operator.wait_for_count(lambda e: e['type'] == 'ADDED', BIG + 1, what='every ADDED read')
            proxy.hold()  # a silent partition: the next request gets no answer
            opened = proxy.connections
            proxy.cut()  # the watch ends; the request that resumes it is held
            proxy.wait_for_connections(opened + 1)
            operator.pause_reading()  # the request cannot end while held: the pause comes during it
        eventually(lambda: _behind(operator), what='the watches paused for stdout')

        operator.process.send_signal(signal.SIGTERM)
        code = operator.process.wait(timeout=GRACE)
    assert code == 0, operator.stderr[-3000:]
    assert 'Streaming tasks are not stopped' not in operator.stderr
    assert 'Exception in callback' not in operator.stderr, operator.stderr[-3000:]


@pytest.mark.parametrize('how', ['folder removed', 'folder replaced by a file'])
def test_a_failure_while_behind_ends_the_process_with_status_1(
        cluster: Cluster, start_operator: StartOperator, tmp_path: pathlib.Path, how: str) -> None:
    """
    ``RUN.fail()`` stops the process with a SIGTERM to itself: a state file save that fails
    while the reader is stuck and the watches are paused must end it as a SIGTERM does, with
    status 1 and its one ERROR line (as root, chmod would stop no write: the folder goes).
    """
    namespace = cluster.new_namespace('failing')
    cluster.create(factory.deployment('first', namespace=namespace, replicas=0))
    folder = tmp_path / 'state'
    folder.mkdir()
    path = folder / 'state'
    operator = start_operator(f'--namespace={namespace}',
                              env={'DEPLOYWATCH_STATE_FILE': str(path), 'DEPLOYWATCH_RESYNC_SECONDS': '0'})
    operator.wait_for(of('first', 'ADDED'), what='ADDED')
    eventually(path.exists, what='the first save')
    operator.pause_reading()
    cluster.create_big(namespace, BIG, size=BLOB)
    eventually(lambda: _behind(operator), what='the watches paused for stdout')

    shutil.rmtree(folder)  # every later save fails: no such directory ...
    if how == 'folder replaced by a file':
        folder.write_text('not a folder\n')  # ... or not a directory
    operator.let_through(1)  # the writer finishes the line the pipe held: a change to save
    code = operator.process.wait(timeout=GRACE)
    stderr = operator.stderr
    assert code == FAILURE_EXIT, stderr[-3000:]
    errors = [line for line in stderr.splitlines() if 'ERROR' in line and '] deploywatch ' in line]
    assert len(errors) == 1 and 'the state file saver failed' in errors[0] and str(path) in errors[0], errors
    # Kopf's own "Watcher for deployments ... has failed" may follow on a real server (seen once on
    # v1.37, with a traceback): open, see the stop note; the exit status and our one line hold.
    assert _behind(operator), 'stdout caught up before the failure: not the scenario'


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
