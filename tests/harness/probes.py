"""
What a Prometheus server and a kubelet see of the operator: ``/metrics`` and ``/healthz``.

The metrics are read with prometheus_client's own text parser, the way a scraper
reads them, so a malformed exposition fails the test, not just a wrong number.
"""
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Mapping

from prometheus_client.parser import text_string_to_metric_families

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
TIMEOUT = 5.0  # seconds: the endpoints are served by threads/loops that must answer at once


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(('127.0.0.1', 0))
        return int(probe.getsockname()[1])


def scrape(port: int) -> Samples:
    """Every sample of ``/metrics``, by name and labels."""
    with urllib.request.urlopen(f'http://127.0.0.1:{port}/metrics', timeout=TIMEOUT) as response:
        text = response.read().decode()
    return {(sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def value(samples: Samples, name: str, labels: Mapping[str, str] | None = None) -> float:
    """One sample's value; 0 for a labelled counter's series that has not appeared yet."""
    key = (name, frozenset((labels or {}).items()))
    if key not in samples and not labels:
        raise AssertionError(f'{name} is not in the metrics: {sorted({n for n, _ in samples})}')
    return samples.get(key, 0.0)


def healthz(port: int) -> tuple[int, str]:
    """Kopf's liveness endpoint: its HTTP status and body (a refused connection is an error)."""
    try:
        with urllib.request.urlopen(f'http://127.0.0.1:{port}/healthz', timeout=TIMEOUT) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode(errors='replace')


def health_over(port: int, seconds: float, *, every: float) -> set[int]:
    """Every status ``/healthz`` answered when asked every ``every`` seconds for ``seconds``."""
    statuses = set()
    until = time.monotonic() + seconds
    while time.monotonic() < until:
        statuses.add(healthz(port)[0])
        time.sleep(every)
    return statuses
