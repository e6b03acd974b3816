"""
docs/operating.md is tested: its YAML is what it claims to be, its metrics are deploywatch's.

* every ``yaml`` block parses; the PrometheusRule is valid, strictly, for the Prometheus
  Operator's published CRD (``tests/deploy/crds/``), and its alerts use only metrics of
  the doc's table, with the manifests' stall bound;
* the table lists exactly the metric families ``deploywatch/base/metrics.py`` serves, with their
  types and label names;
* the kustomization example builds beside ``manifests/`` and labels a ServiceMonitor that is
  still valid; every ``manifests/`` path named exists, and what it applies is a tested shape;
* the README links the doc and lists the two settings it explains.
"""
import pathlib
import re
from typing import Any

import jsonschema
import pytest
import yaml

from deploywatch.base import metrics
from tests.deploy import manifests, schemas

DOC = manifests.REPO / 'docs' / 'operating.md'
README = manifests.REPO / 'README.md'
TABLE_ROW = re.compile(r'^\| `(?P<name>[a-z_*]+)` \|\s*(?P<type>[a-z]*)\s*\|(?P<labels>[^|]*)\|',
                       re.MULTILINE)
METRIC = re.compile(r'\bdeploywatch_[a-z_]+\b')

Obj = dict[str, Any]


def _text() -> str:
    return DOC.read_text()


def _blocks(language: str) -> list[str]:
    return re.findall(rf'```{language}\n(.*?)```', _text(), flags=re.DOTALL)


def _table() -> dict[str, tuple[str, tuple[str, ...]]]:
    """The metrics table: name -> (type, label names); the label values in parentheses left out."""
    rows = {}
    for row in TABLE_ROW.finditer(_text()):
        labels = re.sub(r'\([^)]*\)', '', row['labels'])
        rows[row['name']] = (row['type'], tuple(re.findall(r'`([a-z_]+)`', labels)))
    return rows


def _rule() -> Obj:
    rules: list[Obj] = [doc for block in _blocks('yaml') for doc in yaml.safe_load_all(block)
                        if doc.get('kind') == 'PrometheusRule']
    (rule,) = rules
    return rule


def _crd(kind: str) -> Obj:
    (crd,) = [crd for crd in schemas.published() if crd['spec']['names']['kind'] == kind]
    return crd


def test_every_yaml_block_parses() -> None:
    blocks = _blocks('yaml')
    assert len(blocks) >= 2
    for block in blocks:
        assert [doc for doc in yaml.safe_load_all(block) if doc], block


def test_the_prometheus_rule_is_valid_for_the_operators_crd() -> None:
    rule = _rule()
    schemas.validate(rule, _crd('PrometheusRule'))
    alerts = [r for group in rule['spec']['groups'] for r in group['rules']]
    names = [alert['alert'] for alert in alerts]
    assert len(set(names)) == len(names) >= 2
    assert {'DeploywatchWatchStalled', 'DeploywatchInferredDeletions'} <= set(names)
    broken = _rule()
    broken['spec']['groups'][0]['rules'][0]['expresion'] = broken['spec']['groups'][0]['rules'][0].pop('expr')
    with pytest.raises(jsonschema.ValidationError):  # strictly: a misspelt field fails
        schemas.validate(broken, _crd('PrometheusRule'))
    for alert in alerts:
        assert 'record' not in alert and alert['annotations']['summary'], alert
        expr = alert['expr']
        assert expr.count('(') == expr.count(')') and expr.count('{') == expr.count('}'), expr
        assert expr.count('"') % 2 == 0, expr


def test_the_alerts_use_only_metrics_of_the_table_and_the_manifests_stall_bound() -> None:
    table = _table()
    alerts = {r['alert']: r['expr'] for group in _rule()['spec']['groups'] for r in group['rules']}
    used = {name for expr in alerts.values() for name in METRIC.findall(expr)}
    assert used and used <= set(table), used - set(table)
    for expr in alerts.values():  # rate() and increase() only of counters
        for name in re.findall(r'(?:rate|increase)\((deploywatch_[a-z_]+)', expr):
            assert table[name][0] == 'counter', name
    env = {e['name']: e.get('value') for e in manifests.container(manifests.build('base'))['env']}
    stall = float(env['DEPLOYWATCH_STALL_SECONDS'])
    assert re.search(rf'deploywatch_watch_stalest_seconds\[\w+\]\) > {stall:g}\b',
                     alerts['DeploywatchWatchStalled'])
    assert 'type="DELETED",inferred="true"' in alerts['DeploywatchInferredDeletions']


def test_the_table_lists_exactly_what_deploywatch_serves() -> None:
    """Names, types and label names of every family deploywatch/base/metrics.py collects (all of them:
    the last event's timestamp only once there was one)."""
    served = {}
    for family in metrics.Collector(metrics.Metrics(last_heard=0.0)).collect():
        name = family.name + ('_total' if family.type == 'counter' else '')
        served[name] = (family.type, tuple(getattr(family, '_labelnames', ())))
    documented = {name: row for name, row in _table().items() if name.startswith('deploywatch_')}
    assert documented == served
    assert 'process_*' in _table(), "prometheus_client's standard process metrics"


def test_the_overlay_example_builds_and_labels_a_valid_servicemonitor(tmp_path: pathlib.Path) -> None:
    (example,) = [block for block in _blocks('yaml') if 'kind: Kustomization' in block]
    docs = manifests.build_example(example, tmp_path)
    monitor = manifests.one(docs, 'ServiceMonitor', 'deploywatch')
    assert monitor['metadata']['labels']['release'] == 'monitoring'
    schemas.validate(monitor, _crd('ServiceMonitor'))
    assert manifests.one(docs, 'Deployment', 'deploywatch')['spec']['replicas'] == 2, 'the ha overlay'
    assert manifests.one(docs, 'Service', 'deploywatch-metrics')


def test_every_manifests_path_exists_and_what_it_applies_is_tested() -> None:
    paths = set(re.findall(r'(manifests(?:/[\w.-]+)*/?)', _text()))
    assert 'manifests/components/prometheus-operator' in paths
    for path in paths:
        assert (manifests.REPO / path).exists(), f'docs/operating.md names {path}, which does not exist'
    tested = set(manifests.SHAPES.values())
    applied = re.findall(r'kubectl apply -k (manifests[\w./-]*)', _text())
    assert applied
    for path in applied:
        assert manifests.REPO / path.rstrip('/') in tested, f'docs/operating.md applies {path}, untested'


def test_the_readme_links_here_and_lists_the_settings_it_explains() -> None:
    readme = README.read_text()
    assert '(docs/operating.md)' in readme
    for setting in ('DEPLOYWATCH_METRICS_PORT', 'DEPLOYWATCH_STALL_SECONDS'):
        assert f'| `{setting}` |' in readme, setting
        assert setting in _text(), setting
