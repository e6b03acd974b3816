"""
The Deployment's requests and limits, against what the operator measurably uses.

No benchmark of deploywatch existed when the manifests were written, so they are sized
from this measurement, and this test keeps them honest: the base's container, run as
the pod runs it, against the emulated API server with 1,000 Deployments in 10
namespaces listed at start and then 2,000 changes (scales and rollouts), until the
stream has caught up with the server. From /proc: peak resident memory (VmHWM) and
CPU time. It fails when the memory request no longer covers the peak, when the memory
limit leaves less than twice the peak, or when the CPU limit would hold a burst under
500 events a second. The figures go to pytest's summary; the manifest's comment
quotes them.
"""
import os
import pathlib
import re
import sys
import time
from typing import Any

import pytest

from tests.deploy import containers, dockerfile, emulator, manifests
from tests.deploy.conftest import report
from tests.deploy.containers import Replica
from tests.deploy.rbac import granted
from tests.harness.driver import Driver

DEPLOYMENTS = 1_000
NAMESPACES = 10
CHANGES = 2_000
IMAGE = dockerfile.parse(manifests.REPO / 'Dockerfile')
VENV = pathlib.Path(sys.executable).parent.parent
UNITS = {'Ki': 2**10, 'Mi': 2**20, 'Gi': 2**30, 'm': 1e-3, '': 1.0}


def quantity(text: str) -> float:
    """A Kubernetes quantity ('128Mi', '500m') as a number (bytes, cores)."""
    match = re.fullmatch(r'(\d+(?:\.\d+)?)(Ki|Mi|Gi|m|)', text)
    assert match, f'a quantity this test does not read: {text}'
    return float(match.group(1)) * UNITS[match.group(2)]


def _usage(pid: int) -> tuple[int, float]:
    """(peak resident bytes, CPU seconds) of a process."""
    status = pathlib.Path(f'/proc/{pid}/status').read_text()
    peak = int(re.search(r'^VmHWM:\s+(\d+) kB', status, re.MULTILINE).group(1)) * 1024  # type: ignore[union-attr]
    fields = pathlib.Path(f'/proc/{pid}/stat').read_text().rsplit(')', 1)[1].split()
    return peak, (int(fields[11]) + int(fields[12])) / os.sysconf('SC_CLK_TCK')


def _caught_up(events: list[dict[str, Any]], truth: dict[str, str]) -> list[dict[str, Any]]:
    """Non-empty once the last version printed for every Deployment is the server's."""
    last = {event['uid']: event['resourceVersion'] for event in events}
    return events[-1:] if last == truth else []


def test_requests_and_limits_cover_the_measured_footprint(tmp_path: pathlib.Path,
                                                          request: pytest.FixtureRequest) -> None:
    docs = manifests.build('base')
    container = manifests.container(docs)
    resources = container['resources']
    with emulator.serving(granted(docs)) as thread:
        driver = Driver(thread)
        names = [driver.namespace(f'size-{index}') for index in range(NAMESPACES)]
        live = [(names[index % NAMESPACES], f'd{index:04d}') for index in range(DEPLOYMENTS)]
        for index, (namespace, name) in enumerate(live):
            driver.create(namespace, name, replicas=index % 5, sidecar=index % 3 == 0)

        def truth() -> dict[str, str]:
            return {uid: obj['metadata']['resourceVersion'] for uid, obj in driver.truth().items()}

        kubeconfig = emulator.kubeconfig(thread, tmp_path / 'kubeconfig')
        env = containers.environment(IMAGE, container, venv=VENV, pod='deploywatch-sizing',
                                     extra={'KUBECONFIG': str(kubeconfig), 'HOME': str(tmp_path)})
        replica = Replica(containers.on_free_port(containers.argv(IMAGE, container)), env=env,
                          stderr_path=tmp_path / 'sizing.stderr')
        try:
            listed_truth = truth()
            replica.wait_until(lambda events: _caught_up(events, listed_truth), what='the initial listing',
                               timeout=60)
            listed_peak, listed_cpu = _usage(replica.process.pid)
            printed = len(replica.events)
            for index in range(CHANGES):
                namespace, name = live[index % DEPLOYMENTS]
                if index % 2:
                    driver.scale(namespace, name, index % 7 + 1)
                else:
                    driver.roll_out(namespace, name)
            changed_truth = truth()
            replica.wait_until(lambda events: _caught_up(events, changed_truth), what='every change',
                               timeout=90)
            time.sleep(1.0)  # anything the last events left to do
            peak, cpu = _usage(replica.process.pid)
            changes_printed = len(replica.events) - printed
        finally:
            assert replica.stop() == 0, replica.stderr

    per_event = (cpu - listed_cpu) / changes_printed
    mib = 2**20
    report(request.config, f'sizing: {DEPLOYMENTS} Deployments listed: peak RSS {listed_peak / mib:.0f} MiB, '
                           f'{listed_cpu:.2f} CPU-s since start; after {changes_printed} change events: '
                           f'peak RSS {peak / mib:.0f} MiB, {per_event * 1000:.2f} ms CPU per event; '
                           f'manifests ask {resources["requests"]} up to {resources["limits"]}')
    assert peak <= quantity(resources['requests']['memory']), 'the memory request no longer covers the peak'
    assert 2 * peak <= quantity(resources['limits']['memory']), 'the memory limit is under 2x the peak'
    assert per_event * 500 <= quantity(resources['limits']['cpu']), 'the CPU limit holds 500 events/s back'
