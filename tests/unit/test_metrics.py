"""deploywatch.base.metrics without a process: staleness rules, and the exposition as a scraper parses it."""
import time

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from deploywatch.base.metrics import Collector, Metrics, Watch


def _samples(metrics: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    registry = CollectorRegistry()
    registry.register(Collector(metrics))
    text = generate_latest(registry).decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def _silent_for(seconds: float, *, paused: bool = False) -> Watch:
    return Watch('in namespace x', paused=lambda: paused, heard=time.monotonic() - seconds)


def test_a_watch_silent_beyond_the_bound_is_unhealthy_and_named() -> None:
    metrics = Metrics(watches={_silent_for(1), _silent_for(50)})
    reason = metrics.unhealthy(30)
    assert reason is not None and 'in namespace x' in reason and 'DEPLOYWATCH_STALL_SECONDS=30' in reason
    assert metrics.unhealthy(60) is None
    assert metrics.unhealthy(0) is None  # 0: no stall check


def test_a_paused_watch_is_not_silent_and_its_clock_restarts_when_heard() -> None:
    paused = _silent_for(500, paused=True)
    metrics = Metrics(watches={paused})
    assert metrics.unhealthy(30) is None
    assert paused.silence(time.monotonic()) == 0
    resumed = _silent_for(500)
    metrics.heard(resumed)  # the loop notes a resumed watch as heard
    assert resumed.silence(time.monotonic()) < 1


def test_a_failure_wins_over_everything() -> None:
    metrics = Metrics(failure=lambda: 'RESYNC failed (ValueError: x); stopping.')
    assert metrics.unhealthy(30) == 'RESYNC failed (ValueError: x); stopping.'


def test_no_deployment_watch_is_healthy_while_a_live_watch_of_namespaces_can_start_one() -> None:
    """Issue 20, item 5: a glob that matches no namespace yet is a state that lasts, and a healthy one."""
    metrics = Metrics(unwatched_since=time.monotonic() - 500, namespaces=_silent_for(1))
    assert metrics.unhealthy(30) is None
    reason = metrics.unwatched()
    assert reason is not None and 'no namespace matches' in reason


def test_no_deployment_watch_past_the_bound_without_a_live_watch_of_namespaces_is_unhealthy() -> None:
    long_ago = time.monotonic() - 50
    never = Metrics(unwatched_since=long_ago)  # namespaces not listed, or not a glob: Kopf started none
    assert 'Kopf has started none' in (never.unhealthy(30) or '')
    ended = Metrics(unwatched_since=long_ago, namespaces_ended='APIForbiddenError: (403)')
    assert 'ended (APIForbiddenError: (403))' in (ended.unhealthy(30) or '')
    silent = Metrics(unwatched_since=long_ago, namespaces=_silent_for(40))  # a 403 on watch, retried
    assert 'watch of namespaces' in (silent.unhealthy(30) or '')
    for state in (never, ended, silent):
        assert state.unhealthy(60) is None  # within the bound: starting
        assert state.unhealthy(0) is None  # 0: no stall check


def test_the_bound_runs_from_the_end_of_the_last_deployment_watch() -> None:
    metrics, watch = Metrics(unwatched_since=time.monotonic() - 500), _silent_for(0)
    metrics.watching(watch)
    assert metrics.unhealthy(30) is None and metrics.unwatched() is None
    metrics.unwatching(watch)
    assert metrics.unhealthy(30) is None  # just ended: the bound starts now
    assert (metrics.unwatched() or '').startswith('no Deployment watch for 0s')


def test_only_a_listing_after_the_first_is_a_relist() -> None:
    metrics, watch = Metrics(), _silent_for(10)
    metrics.listed_by(watch)
    assert metrics.relists == 0
    metrics.listed_by(watch)
    assert (metrics.relists, watch.listings) == (1, 2)


def test_the_exposition_parses_with_conventional_names_and_labels() -> None:
    metrics = Metrics(tracked=lambda: 7, pending=lambda: 1024, blocked=lambda: 0.25, dropped=lambda: 3)
    watch = _silent_for(12)
    metrics.watches.add(watch)
    metrics.line_written('DELETED', True)
    metrics.line_written('DELETED', False)
    metrics.line_written('DELETED', False)
    metrics.heard(watch, 'MODIFIED')
    metrics.restarts['expired'] += 1
    metrics.api_errors['410'] += 1

    samples = _samples(metrics)

    assert samples['deploywatch_events_total', (('inferred', 'true'), ('type', 'DELETED'))] == 1
    assert samples['deploywatch_events_total', (('inferred', 'false'), ('type', 'DELETED'))] == 2
    assert samples['deploywatch_watch_events_total', (('type', 'MODIFIED'),)] == 1
    assert samples['deploywatch_watch_restarts_total', (('reason', 'expired'),)] == 1
    assert samples['deploywatch_api_errors_total', (('code', '410'),)] == 1
    assert samples['deploywatch_events_dropped_total', ()] == 3
    assert samples['deploywatch_deployments_tracked', ()] == 7
    assert samples['deploywatch_stdout_pending_bytes', ()] == 1024
    assert samples['deploywatch_stdout_blocked_seconds_total', ()] == 0.25
    assert samples['deploywatch_watches', ()] == 1
    assert samples['deploywatch_watch_stalest_seconds', ()] < 1  # just heard
    assert samples['deploywatch_last_event_timestamp_seconds', ()] == pytest.approx(time.time(), abs=5)
    assert all(name.startswith('deploywatch_') for name, _ in samples)
