"""
Label selectors: the syntax of ``k8s.io/apimachinery/pkg/labels``.

Comma-separated requirements, each ``key``, ``!key``, ``key=value``,
``key==value``, ``key!=value``, ``key in (a,b)`` or ``key notin (a,b)``.

Two users: ``DEPLOYWATCH_LABEL_SELECTOR`` is parsed here so that a typo stops
deploywatch before it connects (the API server would answer 400 on every
request), and the emulated API server filters LIST and WATCH with it.
"""
import dataclasses
import re
from collections.abc import Mapping
from typing import Any

_SET = re.compile(r'^\s*(?P<key>[^\s!=,()]+)\s+(?P<op>in|notin)\s+\((?P<values>[^()]*)\)\s*$')
_EQUALITY = re.compile(r'^\s*(?P<key>[^\s!=,()]+)\s*(?P<op>==|=|!=)\s*(?P<value>[^\s!=,()]*)\s*$')
_EXISTS = re.compile(r'^\s*(?P<not>!?)\s*(?P<key>[^\s!=,()]+)\s*$')


@dataclasses.dataclass(frozen=True)
class Requirement:
    key: str
    op: str  # in, notin, exists, !exists
    values: frozenset[str] = frozenset()

    def matches(self, labels: Mapping[str, Any]) -> bool:
        if self.op == 'exists':
            return self.key in labels
        if self.op == '!exists':
            return self.key not in labels
        if self.op == 'in':
            return labels.get(self.key) in self.values
        return labels.get(self.key) not in self.values  # notin and != also match absent keys


@dataclasses.dataclass(frozen=True)
class Selector:
    requirements: tuple[Requirement, ...] = ()

    @classmethod
    def parse(cls, text: str | None) -> 'Selector':
        if not text:
            return cls()
        return cls(tuple(_requirement(part) for part in _split(text)))

    def matches(self, obj: Mapping[str, Any]) -> bool:
        metadata = obj.get('metadata')
        labels = metadata.get('labels') if isinstance(metadata, Mapping) else None
        labels = labels if isinstance(labels, Mapping) else {}
        return all(requirement.matches(labels) for requirement in self.requirements)


def _split(text: str) -> list[str]:
    """Split on commas outside parentheses."""
    parts, depth, current = [], 0, ''
    for char in text:
        depth += {'(': 1, ')': -1}.get(char, 0)
        if char == ',' and depth == 0:
            parts.append(current)
            current = ''
        else:
            current += char
    return [*parts, current]


def _requirement(part: str) -> Requirement:
    if match := _SET.match(part):
        values = frozenset(v.strip() for v in match['values'].split(',') if v.strip())
        return Requirement(match['key'], match['op'], values)
    if match := _EQUALITY.match(part):
        op = 'notin' if match['op'] == '!=' else 'in'
        return Requirement(match['key'], op, frozenset({match['value']}))
    if match := _EXISTS.match(part):
        return Requirement(match['key'], '!exists' if match['not'] else 'exists')
    raise ValueError(f'unable to parse requirement: {part.strip()!r}')
