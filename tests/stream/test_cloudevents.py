"""DEPLOYWATCH_FORMAT=cloudevents and DEPLOYWATCH_CLUSTER through the real operator, read by the SDK."""
import pathlib
import subprocess
import sys
import urllib.parse

from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent

from deploywatch.testing.factory import deployment
from tests.conftest import StartOperator
from tests.harness.clusters import Cluster
from tests.harness.schema import SCHEMA, VALIDATOR

DATA_SCHEMA = SCHEMA['$id']


def test_every_line_is_a_cloudevent_carrying_a_v1_event(cluster: Cluster,
                                                         start_operator: StartOperator) -> None:
    namespace = cluster.new_namespace()
    cluster.create(deployment('web', namespace=namespace, replicas=0))
    operator = start_operator(f'--namespace={namespace}', text=True,
                              env={'DEPLOYWATCH_FORMAT': 'cloudevents', 'DEPLOYWATCH_CLUSTER': 'prod-eu-1',
                                   'DEPLOYWATCH_RESYNC_SECONDS': '0.5'})
    operator.wait_for_line('"dev.deploywatch.deployment.added"')
    version = cluster.patch(namespace, 'web', {'metadata': {'labels': {'tier': 'a'}}})['metadata'][
        'resourceVersion']
    operator.wait_for_line(f'"resourceVersion":"{version}"')
    operator.wait_for_line('"dev.deploywatch.deployment.resync"')
    cluster.delete(namespace, 'web')
    operator.wait_for_line('"dev.deploywatch.deployment.deleted"')

    events: list[CloudEvent] = []
    for line in list(operator.lines):
        parsed = JSONFormat().read(None, line.encode())
        assert isinstance(parsed, CloudEvent)
        events.append(parsed)
    assert {event.get_type() for event in events} >= {f'dev.deploywatch.deployment.{kind}'
                                                       for kind in ('added', 'modified', 'resync', 'deleted')}
    for event in events:
        data = event.get_data()
        assert isinstance(data, dict)
        VALIDATOR.validate(data)
        assert event.get_specversion() == '1.0'
        assert event.get_id() == data['id']
        assert event.get_type() == f"dev.deploywatch.deployment.{data['type'].lower()}"
        assert event.get_subject() == f'{namespace}/web'
        assert event.get_datacontenttype() == 'application/json'
        assert event.get_dataschema() == DATA_SCHEMA
        time = event.get_time()
        assert time is not None
        assert time.isoformat(timespec='milliseconds').replace('+00:00', 'Z') == data['time']
        source = urllib.parse.urlsplit(event.get_source())
        assert source.netloc == 'prod-eu-1'
        assert source.path == f'/apis/apps/v1/namespaces/{namespace}/deployments/web'
        assert data['cluster'] == 'prod-eu-1'
    ids = [event.get_id() for event in events]
    assert len(ids) == len(set(ids))  # (source, id) is what CloudEvents consumers de-duplicate on


def test_text_mode_names_the_cluster(cluster: Cluster, start_operator: StartOperator) -> None:
    namespace = cluster.new_namespace()
    cluster.create(deployment('web', namespace=namespace, replicas=0))
    operator = start_operator(f'--namespace={namespace}', text=True,
                              env={'DEPLOYWATCH_FORMAT': 'text', 'DEPLOYWATCH_CLUSTER': 'prod-eu-1'})
    line = operator.wait_for_line(f'{namespace}/web')
    assert operator.lines[0].split()[:5] == ['TIME', '(UTC)', 'TYPE', 'CLUSTER', 'NAMESPACE/NAME']
    assert line.split()[1:4] == ['ADDED', 'prod-eu-1', f'{namespace}/web']


def test_a_cluster_name_that_cannot_go_into_a_uri_is_refused(tmp_path: pathlib.Path) -> None:
    result = subprocess.run([sys.executable, '-m', 'deploywatch', 'check'], capture_output=True, text=True,
                            env={'DEPLOYWATCH_CLUSTER': 'prod/eu 1', 'HOME': str(tmp_path)}, timeout=60,
                            check=False)
    assert result.returncode == 2 and result.stderr.count('\n') == 1
    assert 'DEPLOYWATCH_CLUSTER' in result.stderr
