"""
Label selectors exactly as the API server reads them (``k8s.io/apimachinery/pkg/labels``).

``DEPLOYWATCH_LABEL_SELECTOR`` is parsed here so that a selector the API server would
refuse stops deploywatch before it connects: the server answers 400 to every LIST and
WATCH, which a watcher can only retry forever.

A port of the Go lexer and parser (``labels/selector.go``), not a grammar of our own,
because the server's grammar has corners no tidy grammar would choose (``in`` is a key
where a key is expected, ``()`` is the set holding the empty value, ``\\v`` is not
whitespace, a NUL byte ends a token), and deploywatch must refuse exactly what the
server refuses. It works on the UTF-8 bytes, as Go does. ``tests/unit/selector_samples.py``
is the table both this module and a real kube-apiserver are held to.
"""
import dataclasses
import re
from collections.abc import Mapping
from typing import Any

# Tokens (selector.go's Token constants).
END, CLOSE, COMMA, NOT, DOUBLE_EQUALS, EQUALS, GREATER, IDENTIFIER, IN, LESS, NOT_EQUALS, NOTIN, OPEN = (
    'end', ')', ',', '!', '==', '=', '>', 'identifier', 'in', '<', '!=', 'notin', '(')
_LITERALS = {b')': CLOSE, b',': COMMA, b'!': NOT, b'==': DOUBLE_EQUALS, b'=': EQUALS, b'>': GREATER,
             b'in': IN, b'<': LESS, b'!=': NOT_EQUALS, b'notin': NOTIN, b'(': OPEN}
_WHITESPACE = frozenset(b' \t\r\n')
_SPECIAL = frozenset(b'=!(),><')
_OPERATORS = {IN: 'in', NOTIN: 'notin', EQUALS: 'in', DOUBLE_EQUALS: 'in', NOT_EQUALS: 'notin',
              GREATER: 'gt', LESS: 'lt'}  # = and == are a one-value in, != a one-value notin

# k8s.io/apimachinery/pkg/util/validation: IsQualifiedName, IsDNS1123Subdomain, IsValidLabelValue.
_NAME = re.compile(r'([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')
_SUBDOMAIN = re.compile(r'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')
_VALUE = re.compile(r'(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')
NAME_MAX, PREFIX_MAX, VALUE_MAX = 63, 253, 63
_INT64 = re.compile(r'[+-]?[0-9]+')  # strconv.ParseInt(s, 10, 64): a sign, digits, no underscores
INT64_MIN, INT64_MAX = -(2 ** 63), 2 ** 63 - 1


class SelectorError(ValueError):
    """A selector the API server answers 400 to; the message (one printable line) says why."""


@dataclasses.dataclass(frozen=True)
class Requirement:
    key: str
    op: str  # in, notin, exists, !exists, gt, lt
    values: frozenset[str] = frozenset()

    def matches(self, labels: Mapping[str, Any]) -> bool:
        if self.op == 'exists':
            return self.key in labels
        if self.op == '!exists':
            return self.key not in labels
        if self.op == 'in':
            return labels.get(self.key) in self.values
        if self.op == 'notin':
            return labels.get(self.key) not in self.values  # notin and != also match absent keys
        have, (want,) = _int64(labels.get(self.key)), self.values
        if have is None:  # absent, or not an integer: never matches, as in Go
            return False
        return have > int(want) if self.op == 'gt' else have < int(want)


@dataclasses.dataclass(frozen=True)
class Selector:
    requirements: tuple[Requirement, ...] = ()

    @classmethod
    def parse(cls, text: str | None) -> 'Selector':
        """The selector, or :class:`SelectorError` where ``labels.Parse`` returns an error."""
        if not text:
            return cls()
        return cls(tuple(_Parser(text.encode('utf-8', 'surrogateescape')).parse()))

    def matches(self, obj: Mapping[str, Any]) -> bool:
        metadata = obj.get('metadata')
        labels = metadata.get('labels') if isinstance(metadata, Mapping) else None
        labels = labels if isinstance(labels, Mapping) else {}
        return all(requirement.matches(labels) for requirement in self.requirements)


def _int64(value: Any) -> int | None:
    if not isinstance(value, str) or not _INT64.fullmatch(value):
        return None
    number = int(value)
    return number if INT64_MIN <= number <= INT64_MAX else None


def _lex(data: bytes) -> list[tuple[str, str]]:
    """selector.go's Lexer: (token, literal) pairs up to and including END."""
    position = 0

    def read() -> int:  # 0 at the end, as in Go, and for a NUL byte (which is consumed)
        nonlocal position
        if position < len(data):
            position += 1
            return data[position - 1]
        return 0

    items: list[tuple[str, str]] = []
    while True:
        char = read()
        while char in _WHITESPACE:
            char = read()
        if char == 0:
            items.append((END, ''))
            return items
        position -= 1
        buffer = bytearray()
        if char in _SPECIAL:  # the longest run of special characters that is an operator
            token = ''
            while (char := read()) != 0:
                if char not in _SPECIAL:
                    position -= 1
                    break
                buffer.append(char)
                if bytes(buffer) in _LITERALS:
                    token = _LITERALS[bytes(buffer)]
                elif token:
                    position -= 1
                    del buffer[-1]
                    break
            items.append((token, bytes(buffer).decode('ascii')))  # every special character is an operator
            continue
        while (char := read()) != 0:
            if char in _SPECIAL or char in _WHITESPACE:
                position -= 1
                break
            buffer.append(char)
        literal = bytes(buffer).decode('utf-8', 'surrogateescape')
        items.append((_LITERALS.get(bytes(buffer), IDENTIFIER), literal))


class _Parser:
    """selector.go's Parser: a recursive descent over the lexed tokens."""

    def __init__(self, data: bytes) -> None:
        self._items = _lex(data)
        self._position = 0

    def _peek(self, *, values: bool = True) -> tuple[str, str]:
        token, literal = self._items[self._position]
        # Where values are expected (Go's "Values" context), the keywords are identifiers.
        return (IDENTIFIER if values and token in (IN, NOTIN) else token), literal

    def _take(self, *, values: bool = True) -> tuple[str, str]:
        item = self._peek(values=values)
        self._position += 1
        return item

    def parse(self) -> list[Requirement]:
        requirements: list[Requirement] = []
        while True:
            token, literal = self._peek()
            if token == END:
                return requirements
            if token not in (IDENTIFIER, NOT):
                raise SelectorError(f"found {literal!r}, expected: !, identifier, or end of string")
            requirements.append(self._requirement())
            token, literal = self._take()
            if token == END:
                return requirements
            if token != COMMA:
                raise SelectorError(f"found {literal!r}, expected: ',' or end of string")
            token, literal = self._peek()
            if token not in (IDENTIFIER, NOT):
                raise SelectorError(f"found {literal!r}, expected: identifier after ','")

    def _requirement(self) -> Requirement:
        negated = self._peek()[0] == NOT
        if negated:
            self._take()
        token, key = self._take()
        if token != IDENTIFIER:
            raise _unexpected(key, 'identifier')
        _check_key(key)
        if negated or self._peek()[0] in (END, COMMA):  # what follows !key is for parse() to judge
            return Requirement(key, '!exists' if negated else 'exists')
        token, literal = self._take(values=False)
        if token not in _OPERATORS:
            raise SelectorError(f'unable to parse requirement: found {literal!r} after key {key!r}, '
                                'expected: in, notin, =, ==, !=, >, <')
        values = self._set() if token in (IN, NOTIN) else self._exact()
        operator = _OPERATORS[token]
        if operator in ('gt', 'lt') and _int64(next(iter(values))) is None:
            raise SelectorError(f'unable to parse requirement: {key!r} {literal} '
                                f'{next(iter(values))!r}: the value must be an integer')
        for value in values:
            _check_value(key, value)
        return Requirement(key, operator, values)

    def _set(self) -> frozenset[str]:
        token, literal = self._take()
        if token != OPEN:
            raise _unexpected(literal, "'('")
        token, literal = self._peek()
        if token == CLOSE:  # "()" is the set of the empty value
            self._take()
            return frozenset({''})
        if token not in (IDENTIFIER, COMMA):
            raise _unexpected(literal, "',', ')' or identifier")
        values: set[str] = set()
        while True:  # identifiers and commas; an empty place between commas is the empty value
            token, literal = self._take()
            if token == IDENTIFIER:
                values.add(literal)
                following, literal = self._peek()
                if following == CLOSE:
                    break
                if following != COMMA:
                    raise _unexpected(literal, "',' or ')'")
            elif token == COMMA:
                if not values:
                    values.add('')  # "(,"
                following, _ = self._peek()
                if following == CLOSE:
                    values.add('')  # ",)"
                    break
                if following == COMMA:
                    values.add('')  # ",,"
            else:
                raise _unexpected(literal, "',' or identifier")
        self._take()  # the ')'
        return frozenset(values)

    def _exact(self) -> frozenset[str]:
        token, literal = self._peek()
        if token in (END, COMMA):
            return frozenset({''})
        token, literal = self._take()
        if token != IDENTIFIER:
            raise _unexpected(literal, 'identifier')
        return frozenset({literal})


def _unexpected(literal: str, expected: str) -> SelectorError:
    return SelectorError(f'unable to parse requirement: found {literal!r}, expected: {expected}')


def _check_key(key: str) -> None:
    """IsQualifiedName: ``[prefix/]name``, the prefix a DNS-1123 subdomain."""
    problem = None
    parts = key.split('/')
    name = parts[-1]
    if len(parts) > 2:
        problem = "a qualified name has at most one '/'"
    elif len(parts) == 2 and not parts[0]:
        problem = 'the prefix before / is empty'
    elif len(parts) == 2 and len(parts[0].encode('utf-8', 'surrogateescape')) > PREFIX_MAX:
        problem = f'the prefix must be at most {PREFIX_MAX} characters'
    elif len(parts) == 2 and not _SUBDOMAIN.fullmatch(parts[0]):
        problem = ("the prefix must be a lowercase DNS-1123 subdomain: lower case alphanumeric "
                   "characters, '-' or '.', starting and ending with an alphanumeric character")
    elif not name:
        problem = 'the name is empty'
    elif len(name.encode('utf-8', 'surrogateescape')) > NAME_MAX:
        problem = f'the name must be at most {NAME_MAX} characters'
    elif not _NAME.fullmatch(name):
        problem = ("the name must consist of alphanumeric characters, '-', '_' or '.', "
                   "starting and ending with an alphanumeric character")
    if problem:
        raise SelectorError(f'unable to parse requirement: key {key!r}: {problem}')


def _check_value(key: str, value: str) -> None:
    """IsValidLabelValue: empty, or the label-value pattern in at most 63 characters."""
    if len(value.encode('utf-8', 'surrogateescape')) > VALUE_MAX:
        problem = f'must be at most {VALUE_MAX} characters'
    elif not _VALUE.fullmatch(value):
        problem = ("must be empty or consist of alphanumeric characters, '-', '_' or '.', "
                   "starting and ending with an alphanumeric character")
    else:
        return
    raise SelectorError(f'unable to parse requirement: value {value!r} of {key!r} {problem}')
