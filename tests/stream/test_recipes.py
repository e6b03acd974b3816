"""
docs/recipes.md is tested: its jq programs against a stream recorded from the real
operator, its Fluent Bit and Vector snippets for syntax, its line sizes against a measurement.
"""
import json
import pathlib
import re
import tomllib
from typing import Any

import jq
import pytest
import yaml

from deploywatch.testing.factory import deployment
from tests.conftest import StartOperator
from tests.harness.clusters import Cluster
from tests.harness.operator import of
from tests.harness.sizes import measure

RECIPES = pathlib.Path(__file__).resolve().parents[2] / 'docs' / 'recipes.md'
JQ_COMMAND = re.compile(r"\bjq (?P<flags>(?:-[a-z]+ )*)'(?P<program>[^']+)'")


def blocks(language: str) -> list[str]:
    return re.findall(rf'```{language}\n(.*?)```', RECIPES.read_text(), flags=re.DOTALL)


def jq_recipes() -> list[tuple[str, str]]:
    found = [(m['flags'], m['program']) for block in blocks('sh') for m in JQ_COMMAND.finditer(block)]
    assert len(found) == 6, found
    return found


def run(flags: str, program: str, stream: str) -> list[Any]:
    compiled = jq.compile(program)
    results: list[Any] = (compiled.input_text(stream, slurp=True) if '-s' in flags
                          else compiled.input_text(stream)).all()
    return results


@pytest.fixture
def recorded(cluster: Cluster, start_operator: StartOperator) -> str:
    """A real stream: listing, a scale, an image change, a status change, a deletion."""
    namespace = cluster.new_namespace()
    cluster.create(deployment('api', namespace=namespace, replicas=2))
    cluster.create(deployment('web', namespace=namespace))
    operator = start_operator(f'--namespace={namespace}')
    operator.wait_for_count(lambda e: e['type'] == 'ADDED', 2, what='ADDED')
    cluster.patch(namespace, 'api', {'spec': {'replicas': 3}})
    version = cluster.patch(namespace, 'web', {'spec': {'template': {'spec': {'containers': [
        {'name': 'app', 'image': 'nginx:1.27'}]}}}})['metadata']['resourceVersion']
    operator.wait_for(of('web', 'MODIFIED', resourceVersion=version), what='image change')
    cluster.finish_rollout(namespace, 'web')
    cluster.delete(namespace, 'api')
    operator.wait_for(of('api', 'DELETED'), what='DELETED')
    operator.wait_for(lambda e: of('web', 'MODIFIED')(e) and e['summary']['observedGeneration'] == 2,
                      what='the rollout of web')
    return ''.join(json.dumps(event) + '\n' for event in operator.events)


def test_jq_recipes_give_what_they_promise(recorded: str, cluster: Cluster) -> None:
    progress, images, per_namespace, deletions, paths, dedupe = jq_recipes()
    namespace = json.loads(recorded.splitlines()[0])['namespace']

    in_progress = run(*progress, recorded)
    if cluster.emulated:  # no pod is ever ready
        assert f'{namespace}/api ready 0/3' in in_progress and f'{namespace}/web ready 0/1' in in_progress
    else:  # the stand-in kubelet makes pods ready within a second, any time before or after the changes
        assert {f'{namespace}/api ready {n}/3' for n in range(3)} & set(in_progress), in_progress
        assert {f'{namespace}/web ready {n}/1' for n in range(2)} & set(in_progress), in_progress
    assert run(*images, recorded) == [{'namespace': namespace, 'name': 'web', 'images': ['nginx:1.27']}]
    assert run(*per_namespace, recorded) == [[{'namespace': namespace, 'image_changes': 1}]]
    [deleted] = run(*deletions, recorded)
    assert deleted.endswith(f'{namespace}/api inferred=false')
    assert f'{namespace}/api replace /spec/replicas' in run(*paths, recorded)
    doubled = recorded + recorded
    assert len(run(*dedupe, doubled)) == len([line for line in recorded.splitlines()
                                               if '"type": "RESYNC"' not in line])


def test_log_shipper_snippets_parse() -> None:
    [fluent_bit] = blocks('yaml')
    [vector] = blocks('toml')
    pipeline = yaml.safe_load(fluent_bit)['pipeline']
    assert [step['name'] for step in pipeline['filters']] == ['grep', 'parser']
    config = tomllib.loads(vector)
    assert config['transforms']['events']['inputs'] == ['deploywatch']
    # The grep/abort prefix both rely on: every line starts with the schema version.
    prefix = pipeline['filters'][0]['regex'].split(' ', 1)[1]
    assert re.match(prefix, '{"apiVersion":"deploywatch/v1","type":')


def test_documented_line_sizes() -> None:
    table = dict(re.findall(r'\| (.+?) \| ([\d,]+) \|', RECIPES.read_text()))
    documented = [int(value.replace(',', '')) for value in table.values()]
    measured = list(measure().values())
    assert len(documented) == len(measured) == 4
    for doc, real in zip(documented, measured, strict=True):
        assert abs(doc - real) <= real * 0.1, (documented, measured)
    assert measured == sorted(measured, reverse=True)  # each mode is smaller than the one before
