"""
The watch loop's error policy (``deploywatch.kube.loop``), one decision at a time.

What the loop does after a failure decides whether the stream stays whole: a watch
that cannot resume must be listed again (or it stalls silently), one that can must
be resumed (or changes collapse into a relist), odd lines must be retried rather
than crash the loop, relists must be paced, and a 403 that lasts must end the
process in one line. The scenarios in tests/robustness show these end to end; here
each rule is pinned on its own, with a fake clock instead of real waits.
"""
import asyncio
import dataclasses
import logging
from typing import Any

import aiohttp
import pytest
from kopf._cogs.clients import errors as kopf_errors
from kopf._cogs.clients import watching as kopf_watching

from deploywatch.base.metrics import Metrics
from deploywatch.kube import loop
from deploywatch.kube.loop import (
    BACKOFF_FIRST,
    BACKOFF_LIMIT,
    FORBIDDEN_GRACE,
    RELIST_QUIET,
    TOO_LARGE,
    Forbidden,
    MissingPermission,
    OddStream,
    RelistPace,
)

TOO_LARGE_MESSAGE = 'Too large resource version: 90, current: 7'
TOO_LARGE_DETAILS = {'causes': [{'reason': TOO_LARGE, 'message': TOO_LARGE_MESSAGE}]}
TOO_LARGE_STATUS = {'kind': 'Status', 'apiVersion': 'v1', 'status': 'Failure', 'reason': 'Timeout',
                    'message': TOO_LARGE_MESSAGE, 'code': 504,
                    'details': TOO_LARGE_DETAILS}


@dataclasses.dataclass
class Clock:
    """The loop's ``time.monotonic`` and ``asyncio.sleep``: a sleep moves the clock on and is recorded."""
    now: float = 1000.0
    slept: list[float] = dataclasses.field(default_factory=list)

    def monotonic(self) -> float:
        return self.now

    async def sleep(self, delay: float) -> None:
        self.slept.append(delay)
        self.now += delay


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(loop, 'time', fake)  # the loop module's clock only, not asyncio's
    monkeypatch.setattr(asyncio, 'sleep', fake.sleep)
    return fake


@pytest.fixture
def metrics(monkeypatch: pytest.MonkeyPatch) -> Metrics:
    """Counters of this test alone (the process-wide ones count whatever ran before)."""
    fresh = Metrics()
    monkeypatch.setattr(loop, 'METRICS', fresh)
    return fresh


@dataclasses.dataclass
class Warnings:
    """The warnings deploywatch's logger wrote during the test, as text."""
    caplog: pytest.LogCaptureFixture

    def __call__(self) -> list[str]:
        return [record.getMessage() for record in self.caplog.records
                if record.name == 'deploywatch' and record.levelno == logging.WARNING]


@pytest.fixture
def warnings(caplog: pytest.LogCaptureFixture) -> Warnings:
    caplog.set_level(logging.WARNING, logger='deploywatch')
    return Warnings(caplog)


def api_error(status: int, *, details: dict[str, Any] | None = None) -> kopf_errors.APIError:
    """An error as Kopf raises it for an HTTP status (its class by the status), with a Status body."""
    payload: Any = {'kind': 'Status', 'code': status, 'message': f'status {status}',
                    **({'details': details} if details is not None else {})}
    classes: dict[int, type[kopf_errors.APIError]] = {
        403: kopf_errors.APIForbiddenError, 410: kopf_errors.APIClientError,
        429: kopf_errors.APITooManyRequestsError, 500: kopf_errors.APIServerError,
        504: kopf_errors.APIServerError}
    return classes[status](payload, status=status, headers={})


def forbidden() -> kopf_errors.APIForbiddenError:
    payload: Any = {'kind': 'Status', 'code': 403, 'message': 'deployments.apps is forbidden: User "x"'}
    return kopf_errors.APIForbiddenError(payload, status=403, headers={})


# _needs_relist: whether a watch cannot resume from its resourceVersion

def test_410_gone_needs_a_relist_whatever_the_body() -> None:
    assert loop._needs_relist(410, None)
    assert loop._needs_relist(410, {})
    assert loop._needs_relist(410, 'not a Status')


@pytest.mark.parametrize('status', [TOO_LARGE_STATUS, TOO_LARGE_DETAILS], ids=['status body', 'details'])
def test_504_too_large_resource_version_needs_a_relist(status: dict[str, Any]) -> None:
    """As an ERROR event the loop has the Status body; from a failed request, its ``details``."""
    assert loop._needs_relist(504, status)


@pytest.mark.parametrize('status', [
    None, {}, {'details': {}}, {'details': {'causes': []}},
    {'details': {'causes': [{'reason': 'FieldValueInvalid'}]}},
    {'causes': [{'reason': 'Timeout'}]},
], ids=['no body', 'empty body', 'no causes', 'empty causes', 'another cause', 'another cause in details'])
def test_a_504_without_the_too_large_cause_resumes(status: Any) -> None:
    """A plain gateway timeout: the history is still there, resuming keeps every change."""
    assert not loop._needs_relist(504, status)


@pytest.mark.parametrize('code', [None, 200, 403, 429, 500, 503, '504', 'stream'])
def test_other_codes_resume_even_with_the_too_large_cause(code: object) -> None:
    assert not loop._needs_relist(code, TOO_LARGE_STATUS)
    assert not loop._needs_relist(code, TOO_LARGE_DETAILS)


@pytest.mark.parametrize('status', [
    'Too large resource version', ['details'], 504,
    {'details': 'causes'}, {'details': ['causes']},
    {'details': {'causes': None}}, {'details': {'causes': 'ResourceVersionTooLarge'}},
    {'details': {'causes': [TOO_LARGE, None, 7, ['reason', TOO_LARGE]]}},
    {'details': {'causes': [{'reason': None}, {'no reason': TOO_LARGE}]}},
    {'details': {'causes': 5}}, {'causes': 5}, {'causes': {'reason': TOO_LARGE}},
], ids=['string', 'list', 'number', 'details a string', 'details a list', 'causes null', 'causes a string',
        'causes not maps', 'causes without the reason', 'causes a number', 'causes a number, no details',
        'causes a map'])
def test_malformed_details_resume_rather_than_raise(status: Any) -> None:
    """A broken server's body is no evidence of anything: resume, as for any other 504."""
    assert not loop._needs_relist(504, status)


def test_the_too_large_cause_counts_among_malformed_ones() -> None:
    details = {'causes': [None, 'x', {'reason': 'Other'}, {'reason': TOO_LARGE}]}
    assert loop._needs_relist(504, details)
    assert loop._needs_relist(504, {'details': details})


# _failed: what a failed request counts, and whether the loop lists again

@pytest.mark.parametrize(('error', 'relist', 'code', 'reason'), [
    (api_error(410), True, '410', 'expired'),
    (api_error(504, details=TOO_LARGE_DETAILS), True, '504', 'expired'),
    (api_error(504), False, '504', 'error'),
    (api_error(500, details=TOO_LARGE_DETAILS), False, '500', 'error'),
    (api_error(429), False, '429', 'error'),
    (forbidden(), False, '403', 'forbidden'),
    (OddStream('a watch line is not an event'), False, 'stream', 'error'),
    (kopf_watching.WatchingError('Error in the watch-stream'), False, 'stream', 'error'),
    (aiohttp.ClientConnectionError('refused'), False, 'connection', 'error'),
    (aiohttp.ServerDisconnectedError(), False, 'connection', 'error'),
    (TimeoutError(), False, 'connection', 'error'),
], ids=['410', '504 too large', '504', '500 with the cause', '429', '403', 'odd stream', 'watching error',
        'connection refused', 'disconnected', 'timeout'])
def test_a_failure_is_counted_by_status_and_restart_reason(metrics: Metrics, error: Exception, relist: bool,
                                                           code: str, reason: str) -> None:
    assert loop._failed(error) is relist
    assert metrics.api_errors == {code: 1}
    assert metrics.restarts == {reason: 1}


def test_failures_add_up(metrics: Metrics) -> None:
    for error in [api_error(410), api_error(410), forbidden(), OddStream('x'), TimeoutError()]:
        loop._failed(error)
    assert metrics.api_errors == {'410': 2, '403': 1, 'stream': 1, 'connection': 1}
    assert metrics.restarts == {'expired': 2, 'forbidden': 1, 'error': 2}


def test_an_error_with_a_body_that_is_no_status_resumes(metrics: Metrics) -> None:
    """Kopf keeps a body that is not JSON as a string: no details, nothing to relist for."""
    error = kopf_errors.APIServerError('<html>504 Gateway Time-out</html>', status=504, headers={})
    assert loop._failed(error) is False
    assert metrics.restarts == {'error': 1}


# _event: a watch line's type and object, or OddStream

def test_an_event_gives_its_type_and_object() -> None:
    obj = {'metadata': {'name': 'web'}}
    assert loop._event({'type': 'MODIFIED', 'object': obj}) == ('MODIFIED', obj)


def test_an_unknown_type_string_is_an_event_the_loop_skips() -> None:
    """Not odd: a newer server may send types this one does not know (counted as 'other')."""
    assert loop._event({'type': 'FUTURE', 'object': {}}) == ('FUTURE', {})


@pytest.mark.parametrize('raw', [
    None, 'ADDED', b'{"type": "ADDED"}', 7, ['ADDED', {}], ('ADDED', {}),
], ids=['null', 'string', 'bytes', 'number', 'list', 'tuple'])
def test_a_line_that_is_not_a_map_is_an_odd_stream(raw: Any) -> None:
    with pytest.raises(OddStream, match='not an event'):
        loop._event(raw)


@pytest.mark.parametrize('raw', [
    {'object': {}}, {'type': None, 'object': {}}, {'type': 7, 'object': {}},
    {'type': ['ADDED'], 'object': {}}, {'type': {'ADDED': 1}, 'object': {}},
], ids=['missing', 'null', 'number', 'list (unhashable)', 'map (unhashable)'])
def test_a_type_that_is_no_string_is_an_odd_stream(raw: Any) -> None:
    """An unhashable type would raise a TypeError out of the loop where it is looked up in a set."""
    with pytest.raises(OddStream):
        loop._event(raw)


@pytest.mark.parametrize('raw', [
    {'type': 'ADDED'}, {'type': 'ADDED', 'object': None}, {'type': 'ADDED', 'object': 'web'},
    {'type': 'ADDED', 'object': ['web']}, {'type': 'ADDED', 'object': 7},
], ids=['missing', 'null', 'string', 'list', 'number'])
def test_an_object_that_is_no_map_is_an_odd_stream(raw: Any) -> None:
    with pytest.raises(OddStream):
        loop._event(raw)


def test_an_odd_line_is_shown_cut_to_one_short_line() -> None:
    with pytest.raises(OddStream) as raised:
        loop._event(['x' * 10_000])
    assert len(str(raised.value)) < 300


# RelistPace: relists at once after a quiet while, then 1 s doubling to 30 s

def waits(pace: RelistPace, clock: Clock, *, count: int) -> list[float]:
    """What ``count`` relists in a row waited (0: none), each right after the one before."""
    async def relists() -> list[float]:
        waited = []
        for _ in range(count):
            before = len(clock.slept)
            await pace.wait()
            waited.append(sum(clock.slept[before:]))
        return waited
    return asyncio.run(relists())


def test_relists_in_a_row_wait_1_s_doubling_up_to_30_s(clock: Clock, metrics: Metrics) -> None:
    assert waits(RelistPace(), clock, count=9) == [0, 1, 2, 4, 8, 16, 30, 30, 30]
    assert (BACKOFF_FIRST, BACKOFF_LIMIT) == (1, 30)
    assert metrics.relist_waits == 8


def test_a_relist_after_a_quiet_while_goes_at_once_and_the_pace_starts_again(clock: Clock,
                                                                              metrics: Metrics) -> None:
    pace = RelistPace()
    assert waits(pace, clock, count=5) == [0, 1, 2, 4, 8]
    clock.now += RELIST_QUIET + 0.001
    assert waits(pace, clock, count=3) == [0, 1, 2]
    assert metrics.relist_waits == 6


def test_a_relist_within_the_quiet_while_is_still_paced(clock: Clock, metrics: Metrics) -> None:
    pace = RelistPace()
    assert waits(pace, clock, count=3) == [0, 1, 2]
    clock.now += RELIST_QUIET
    assert waits(pace, clock, count=1) == [4]


# Forbidden: 403s retried for FORBIDDEN_GRACE seconds, then MissingPermission (the runtime's exit 3)

WHERE = 'in namespace "prod"'


def test_the_first_403_warns_once(clock: Clock, warnings: Warnings) -> None:
    fence = Forbidden(where=WHERE)
    for _ in range(3):
        fence.seen(forbidden(), backoff=1.0)  # within the grace: no MissingPermission
        clock.now += 1
    assert len(warnings()) == 1
    assert WHERE in warnings()[0] and 'deployments.apps is forbidden' in warnings()[0]
    assert f'{FORBIDDEN_GRACE:.0f}s' in warnings()[0]


def test_an_answer_clears_the_403s_with_one_line_and_the_grace_starts_again(clock: Clock,
                                                                             warnings: Warnings) -> None:
    fence = Forbidden(where=WHERE)
    fence.cleared()
    assert warnings() == []  # nothing to clear: nothing said
    fence.seen(forbidden(), backoff=1.0)
    clock.now += 20
    fence.cleared()
    fence.cleared()
    assert len(warnings()) == 2 and 'allowed again after 20s' in warnings()[1]
    fence.seen(forbidden(), backoff=1.0)  # the grace counts from here
    assert len(warnings()) == 3
    clock.now += FORBIDDEN_GRACE - 2
    fence.seen(forbidden(), backoff=1.0)  # 29 s of 403s since the answer: no MissingPermission yet


def test_403s_that_last_the_grace_are_a_missing_permission(clock: Clock, warnings: Warnings) -> None:
    """It comes when the next retry would fall past the grace: its backoff counts."""
    fence = Forbidden(where=WHERE)
    fence.seen(forbidden(), backoff=1.0)
    clock.now += FORBIDDEN_GRACE - 8
    fence.seen(forbidden(), backoff=7.9)
    with pytest.raises(MissingPermission) as raised:
        fence.seen(forbidden(), backoff=8.0)
    line = str(raised.value)
    assert line.startswith(f'forbidden to read deployments {WHERE}: deployments.apps is forbidden')
    assert 'manifests/base/rbac.yaml' in line and '\n' not in line
    assert len(warnings()) == 1  # the report is the exit's line, not another warning
