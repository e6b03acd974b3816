"""events.build and events.timestamp: the one place a line's fields, order and presence are decided."""
import datetime
import json
from typing import Any

import pytest

from deploywatch.model import events, objects, rollout
from deploywatch.model.events import SCHEMA_VERSION, EventType
from tests import builders
from tests.harness.schema import VALIDATOR

PLUS_TWO = datetime.timezone(datetime.timedelta(hours=2))
OBSERVED = datetime.datetime(2024, 5, 1, 14, 30, 5, 123999, tzinfo=PLUS_TWO)  # 12:30:05.123 UTC
IDENTITY = ['apiVersion', 'type', 'id', 'time', 'namespace', 'name', 'uid', 'resourceVersion']


def cleaned(*, replicas: int = 1, rv: str = '10') -> dict[str, Any]:
    """The Deployment of these events, cleaned as the tracker hands it to ``events.build``."""
    return objects.clean(builders.deployment(namespace='prod', rv=rv, generation=1, replicas=replicas,
                                             pod=builders.pod(container='a')), redact=True)


def build(kind: EventType, **extra: Any) -> dict[str, Any]:
    return events.build(type=kind, obj=cleaned(), observed=OBSERVED, **extra)


# timestamp

def test_timestamp_converts_to_utc_with_milliseconds() -> None:
    assert events.timestamp(OBSERVED) == '2024-05-01T12:30:05.123Z'


def test_timestamp_crosses_the_date_line_when_converting() -> None:
    minus_five = datetime.timezone(datetime.timedelta(hours=-5))
    moment = datetime.datetime(2023, 12, 31, 22, 0, 0, tzinfo=minus_five)
    assert events.timestamp(moment) == '2024-01-01T03:00:00.000Z'


def test_timestamp_truncates_and_pads_milliseconds() -> None:
    assert events.timestamp(datetime.datetime(2024, 1, 2, 3, 4, 5, 999999, tzinfo=datetime.UTC)) \
        == '2024-01-02T03:04:05.999Z'
    assert events.timestamp(datetime.datetime(2024, 1, 2, 3, 4, 5, 7000, tzinfo=datetime.UTC)) \
        == '2024-01-02T03:04:05.007Z'
    assert events.timestamp(datetime.datetime(2024, 1, 2, 3, 4, 5, tzinfo=datetime.UTC)) \
        == '2024-01-02T03:04:05.000Z'


def test_timestamp_pads_the_year_to_four_digits() -> None:
    assert events.timestamp(datetime.datetime(999, 1, 1, tzinfo=datetime.UTC)) == '0999-01-01T00:00:00.000Z'


@pytest.mark.parametrize('moment', [
    OBSERVED,
    datetime.datetime(1, 1, 1, tzinfo=datetime.UTC),
    datetime.datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=datetime.UTC),
    datetime.datetime.now(datetime.UTC),
])
def test_timestamp_matches_the_schema_pattern(moment: datetime.datetime) -> None:
    VALIDATOR.validate({**build(EventType.RESYNC), 'time': events.timestamp(moment)})


# build: presence rules

def test_added_carries_initial_and_neither_old_nor_diff() -> None:
    listed = build(EventType.ADDED, initial=True)
    watched = build(EventType.ADDED, initial=False)
    assert listed['initial'] is True
    assert watched['initial'] is False
    assert build(EventType.ADDED)['initial'] is False
    for event in (listed, watched):
        assert 'old' not in event
        assert 'diff' not in event


def test_modified_carries_old_and_diff_and_no_initial() -> None:
    old = cleaned(replicas=1, rv='10')
    new = cleaned(replicas=3, rv='11')
    event = events.build(type=EventType.MODIFIED, obj=new, old=old, observed=OBSERVED, initial=True)
    assert 'initial' not in event
    assert event['old'] == old
    assert event['object'] == new
    assert event['diff'] == [{'op': 'replace', 'path': '/spec/replicas', 'value': 3}]
    assert event['resourceVersion'] == '11'


def test_modified_with_only_a_new_resource_version_has_an_empty_diff() -> None:
    event = events.build(type=EventType.MODIFIED, obj=cleaned(rv='11'), old=cleaned(rv='10'),
                         observed=OBSERVED)
    assert event['diff'] == []
    VALIDATOR.validate(event)


@pytest.mark.parametrize('kind', [EventType.DELETED, EventType.RESYNC])
def test_deleted_and_resync_carry_none_of_initial_old_diff(kind: EventType) -> None:
    event = build(kind, initial=True, old=cleaned(rv='1'))
    assert not {'initial', 'old', 'diff'} & event.keys()


# build: content and order

def test_identity_comes_first_and_the_bulk_last() -> None:
    added = build(EventType.ADDED, initial=True)
    assert list(added) == [*IDENTITY, 'initial', 'summary', 'changedBy', 'object']
    modified = events.build(type=EventType.MODIFIED, obj=cleaned(rv='2'), old=cleaned(rv='1'),
                            observed=OBSERVED)
    assert list(modified) == [*IDENTITY, 'summary', 'changedBy', 'diff', 'object', 'old']
    assert list(build(EventType.DELETED)) == [*IDENTITY, 'summary', 'object']
    assert list(build(EventType.RESYNC)) == [*IDENTITY, 'summary', 'object']


def test_identity_fields_come_from_metadata() -> None:
    event = build(EventType.RESYNC)
    assert event['apiVersion'] == SCHEMA_VERSION == 'deploywatch/v1'
    assert event['type'] == 'RESYNC'
    assert event['time'] == '2024-05-01T12:30:05.123Z'
    assert (event['namespace'], event['name'], event['uid'], event['resourceVersion']) == \
        ('prod', 'web', 'u-1', '10')
    assert event['summary'] == {**objects.summarize(cleaned()), 'rollout': rollout.rollout(cleaned())}
    assert event['object'] == cleaned()


def test_missing_identity_fields_are_null() -> None:
    event = events.build(type=EventType.DELETED, obj={'metadata': None}, observed=OBSERVED)
    assert [event[name] for name in ('namespace', 'name', 'uid', 'resourceVersion')] == [None] * 4
    VALIDATOR.validate(event)


def test_the_type_is_printed_as_its_plain_name() -> None:
    assert json.loads(json.dumps(build(EventType.DELETED)))['type'] == 'DELETED'
    assert [kind.value for kind in EventType] == ['ADDED', 'MODIFIED', 'DELETED', 'RESYNC']


def test_every_kind_of_event_validates_against_the_schema() -> None:
    old = cleaned(replicas=1, rv='1')
    new = cleaned(replicas=2, rv='2')
    built = [
        events.build(type=EventType.ADDED, obj=new, observed=OBSERVED, initial=True),
        events.build(type=EventType.ADDED, obj=new, observed=OBSERVED, initial=False),
        events.build(type=EventType.MODIFIED, obj=new, observed=OBSERVED, old=old),
        events.build(type=EventType.DELETED, obj=new, observed=OBSERVED),
        events.build(type=EventType.RESYNC, obj=new, observed=OBSERVED),
    ]
    for event in built:
        VALIDATOR.validate(event)


def test_the_schema_rejects_lines_that_break_the_presence_rules() -> None:
    """The validator used everywhere is not vacuous: it catches what build must never produce."""
    added = build(EventType.ADDED, initial=True)
    assert not VALIDATOR.is_valid({key: value for key, value in added.items() if key != 'initial'})
    assert not VALIDATOR.is_valid({**build(EventType.RESYNC), 'initial': True})
    assert not VALIDATOR.is_valid({**build(EventType.DELETED), 'diff': []})
    assert not VALIDATOR.is_valid({**build(EventType.RESYNC), 'time': '2024-05-01T12:30:05Z'})
