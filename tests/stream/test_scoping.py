"""Behaviour 7: namespace scoping comes from Kopf's flags: exact, cluster-wide, globs."""
import pathlib

from deploywatch.testing.factory import deployment
from tests.conftest import StartOperator
from tests.harness.clusters import Cluster
from tests.harness.operator import of


def test_one_namespace_prints_nothing_from_others(cluster: Cluster, start_operator: StartOperator) -> None:
    mine, other = cluster.new_namespace(), cluster.new_namespace()
    cluster.create(deployment('here', namespace=mine))
    cluster.create(deployment('there', namespace=other))
    operator = start_operator(f'--namespace={mine}')
    operator.wait_for(of('here', 'ADDED'), what='ADDED in the watched namespace')

    cluster.patch(other, 'there', {'spec': {'replicas': 2}})
    cluster.create(deployment('there-too', namespace=other))
    cluster.create(deployment('sentinel', namespace=mine))  # created last: once seen, the rest was too
    operator.wait_for(of('sentinel', 'ADDED'), what='sentinel')

    assert {e['namespace'] for e in operator.events} == {mine}


def test_all_namespaces_prints_every_namespace(cluster: Cluster, start_operator: StartOperator) -> None:
    first, second = cluster.new_namespace(), cluster.new_namespace()
    cluster.create(deployment('one', namespace=first))
    operator = start_operator('--all-namespaces')
    operator.wait_for(lambda e: e['namespace'] == first and e['name'] == 'one', what='ADDED in the first')

    cluster.create(deployment('two', namespace=second))

    event = operator.wait_for(lambda e: e['namespace'] == second and e['name'] == 'two',
                              what='ADDED in the second namespace')
    assert event['type'] == 'ADDED' and event['initial'] is False


def test_a_glob_selects_namespaces_by_pattern(cluster: Cluster, start_operator: StartOperator,
                                              tmp_path: pathlib.Path) -> None:
    team = cluster.new_namespace('team')
    other = cluster.new_namespace('other')
    for namespace in (team, other):
        cluster.create(deployment('app', namespace=namespace))

    # Globs need the namespace list: the namespace-globs component's RBAC adds list/watch on namespaces.
    kubeconfig = cluster.operator_kubeconfig(tmp_path / 'globs.kubeconfig', role='globs')
    operator = start_operator('--namespace=team-*', kubeconfig=kubeconfig)
    operator.wait_for(lambda e: e['namespace'] == team, what='ADDED in the matching namespace')
    late_team = cluster.new_namespace('team')  # created while running: the glob picks it up
    cluster.create(deployment('ignored', namespace=other))
    cluster.create(deployment('late', namespace=late_team))
    operator.wait_for(lambda e: e['namespace'] == late_team, what='ADDED in the new team namespace')
    assert other not in {e['namespace'] for e in operator.events}
