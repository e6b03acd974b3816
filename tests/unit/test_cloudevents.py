"""cloudevents: each event as one CloudEvents 1.0 JSON object, read back by the CloudEvents SDK."""
import datetime
import functools
import urllib.parse

from cloudevents.core.formats.json import JSONFormat

from deploywatch.model.tracker import Tracker
from deploywatch.output import cloudevents
from tests import builders
from tests.harness.schema import SCHEMA, VALIDATOR

NOW = datetime.datetime(2026, 12, 1, 9, 38, 6, 123000, tzinfo=datetime.UTC)


raw = functools.partial(builders.deployment, typed=False, namespace='prod', rv='7', generation=1)


def test_an_event_reads_back_with_the_sdk_with_every_attribute() -> None:
    event = Tracker(redact=True, clock=lambda: NOW, cluster='prod-eu-1').observe(None, raw())
    assert event is not None
    line = cloudevents.encode(event)
    assert line.endswith(b'\n') and line.count(b'\n') == 1

    parsed = JSONFormat().read(None, line)
    assert parsed.get_specversion() == '1.0'
    assert parsed.get_id() == event['id'] == 'u-1:7:ADDED'
    assert parsed.get_source() == '//prod-eu-1/apis/apps/v1/namespaces/prod/deployments/web'
    assert parsed.get_type() == 'dev.deploywatch.deployment.added'
    assert parsed.get_subject() == 'prod/web'
    assert parsed.get_time() == NOW
    assert parsed.get_datacontenttype() == 'application/json'
    assert parsed.get_dataschema() == SCHEMA['$id']
    assert parsed.get_data() == event
    VALIDATOR.validate(parsed.get_data())


def test_source_is_a_uri_reference_naming_cluster_and_api_path() -> None:
    source = urllib.parse.urlsplit(cloudevents.source({'cluster': 'gke_p_z_c', 'namespace': 'a',
                                                       'name': 'b'}))
    assert (source.scheme, source.netloc, source.path) == ('', 'gke_p_z_c',
                                                           '/apis/apps/v1/namespaces/a/deployments/b')
    assert cloudevents.source({'namespace': 'a', 'name': 'b'}) == '/apis/apps/v1/namespaces/a/deployments/b'
    # Whatever a hostile object carries stays inside its path segment.
    odd = cloudevents.source({'namespace': 'a/../b', 'name': 'x?y#z \n', 'cluster': 'c'})
    assert urllib.parse.urlsplit(odd).path.split('/') == [
        '', 'apis', 'apps', 'v1', 'namespaces', 'a%2F..%2Fb', 'deployments', 'x%3Fy%23z%20%0A']


def test_every_type_has_its_own_cloudevents_type() -> None:
    for kind in ('ADDED', 'MODIFIED', 'DELETED', 'RESYNC'):
        envelope = cloudevents.envelope({'type': kind, 'id': 'x', 'namespace': 'n', 'name': 'a',
                                         'time': '2026-12-01T09:38:06.123Z'})
        assert envelope['type'] == f'dev.deploywatch.deployment.{kind.lower()}'
