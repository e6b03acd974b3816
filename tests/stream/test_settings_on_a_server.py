"""
Settings whose meaning belongs to the API server or to Kopf, held to the real thing.

* ``DEPLOYWATCH_LABEL_SELECTOR`` is refused before connecting when the API
  server would refuse it: the table of ``tests/unit/selector_samples.py``
  (which ``tests/unit/test_selectors.py`` holds deploywatch's parser to) is
  put to the API server as LISTs, 200 for every accepted selector and 400 for
  every rejected one: to a real kube-apiserver, and to the emulated one, whose
  parser (``deploywatch.testing.labels``) is its own, not deploywatch's.
* ``--namespace`` patterns with ``[...]`` are globs: they need the namespace
  list, as ``*`` and ``?`` do (Kopf matches patterns with ``fnmatch``).
"""
import pathlib
import uuid

import kubernetes

from deploywatch.testing.factory import deployment
from tests.conftest import StartOperator
from tests.harness.clusters import Cluster
from tests.harness.operator import Predicate
from tests.unit.selector_samples import ACCEPTED, REJECTED


def _list_status(apps: kubernetes.client.AppsV1Api, namespace: str, selector: str) -> int:
    try:
        apps.list_namespaced_deployment(namespace, label_selector=selector, _preload_content=False)
    except kubernetes.client.ApiException as error:
        return int(error.status)
    return 200


def test_the_api_server_accepts_and_rejects_the_selectors_deploywatch_does(cluster: Cluster) -> None:
    namespace = cluster.new_namespace()
    client = kubernetes.config.new_client_from_config(config_file=str(cluster.kubeconfig))  # type: ignore[no-untyped-call]
    apps = kubernetes.client.AppsV1Api(client)

    answers = {selector: _list_status(apps, namespace, selector) for selector, _ in [*ACCEPTED, *REJECTED]}

    assert {s: code for s, code in answers.items() if s in dict(ACCEPTED) and code != 200} == {}
    assert {s: code for s, code in answers.items() if s in dict(REJECTED) and code != 400} == {}


def _added_in(namespace: str) -> Predicate:
    return lambda event: event['namespace'] == namespace and event['type'] == 'ADDED'


def test_a_bracket_pattern_selects_namespaces_as_a_glob(
        cluster: Cluster, start_operator: StartOperator, tmp_path: pathlib.Path) -> None:
    prefix = f'br{uuid.uuid4().hex[:6]}'
    first, second, third = (cluster.new_namespace(f'{prefix}-{letter}') for letter in 'abc')
    for namespace in (first, second, third):
        cluster.create(deployment('app', namespace=namespace))
    # Only brackets, no * or ?: each name is '<prefix>-<letter>-' and 8 hex digits.
    pattern = f'{prefix}-[ab]-' + '[0-9a-f]' * 8

    kubeconfig = cluster.operator_kubeconfig(tmp_path / 'globs.kubeconfig', role='globs')
    operator = start_operator(f'--namespace={pattern}', kubeconfig=kubeconfig)
    for namespace in (first, second):
        operator.wait_for(_added_in(namespace), what=f'ADDED in {namespace}, which {pattern} matches')
    cluster.create(deployment('late', namespace=third))
    cluster.create(deployment('sentinel', namespace=first))
    operator.wait_for(lambda e: e['namespace'] == first and e['name'] == 'sentinel', what='the sentinel')

    assert {e['namespace'] for e in operator.events} == {first, second}
