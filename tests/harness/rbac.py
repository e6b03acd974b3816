"""RBAC rules of the shipped manifests, as the emulated API server enforces them."""
import pathlib

import yaml

from deploywatch.testing import Rule


def rules_from_manifest(path: pathlib.Path) -> tuple[Rule, ...]:
    """The rules of every (Cluster)Role in a manifest file, cluster-wide."""
    rules: list[Rule] = []
    for document in yaml.safe_load_all(path.read_text()):
        if document and document.get('kind') in ('ClusterRole', 'Role'):
            namespace = document['metadata'].get('namespace')
            for rule in document.get('rules', []):
                rules.append(Rule(verbs=frozenset(rule['verbs']), groups=frozenset(rule['apiGroups']),
                                  resources=frozenset(rule['resources']),
                                  namespaces=frozenset({namespace}) if namespace else None))
    return tuple(rules)
