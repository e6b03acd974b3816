"""
The emulated server's label selectors, as ``k8s.io/apimachinery/pkg/labels`` parses and matches them.

Its own, on purpose: deploywatch checks ``DEPLOYWATCH_LABEL_SELECTOR`` with
``deploywatch.base.selectors``, and an emulator that filtered with the code under test
would agree with it by construction. This follows ``labels/selector.go`` (the byte
lexer, the parser and ``Requirement.Matches``) and answers a selector the server
refuses with the server's own message (``v1.*/selector-refused.json``), which
``server.py`` sends as 400 BadRequest to a LIST and to a WATCH alike.
"""
import dataclasses
import re
from collections.abc import Mapping
from typing import Any

END, IDENTIFIER = 'end', 'identifier'
_OPERATORS = frozenset({')', ',', '!', '==', '=', '>', 'in', '<', '!=', 'notin', '('})
_SPECIAL = frozenset(b'=!(),><')
_WHITESPACE = frozenset(b' \t\r\n')  # not \v, nor \f
_BINARY = ('in', 'notin', '=', '==', '!=', '>', '<')

_NAME_FORMAT = '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]'
_VALUE_FORMAT = f'({_NAME_FORMAT})?'
_SUBDOMAIN_FORMAT = r'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*'
_NAME_RULE = ("must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an "
              "alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', "
              f"regex used for validation is '{_NAME_FORMAT}')")
_VALUE_RULE = ("a valid label must be an empty string or consist of alphanumeric characters, '-', '_' "
               "or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or "
               f"'my_value',  or '12345', regex used for validation is '{_VALUE_FORMAT}')")
_SUBDOMAIN_RULE = ("a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' "
                   "or '.', and must start and end with an alphanumeric character (e.g. 'example.com', "
                   f"regex used for validation is '{_SUBDOMAIN_FORMAT}')")
_INT64 = re.compile(rb'[+-]?[0-9]+')


class SelectorError(ValueError):
    """A selector the server refuses; the message is the one it answers with."""


@dataclasses.dataclass(frozen=True)
class Requirement:
    key: bytes
    operator: str  # one of _BINARY, 'exists' or '!'
    values: frozenset[bytes] = frozenset()

    def matches(self, labels: Mapping[bytes, bytes]) -> bool:
        value = labels.get(self.key)
        if self.operator in ('in', '=', '=='):
            return value in self.values
        if self.operator in ('notin', '!='):
            return value not in self.values  # an absent key passes
        if self.operator == 'exists':
            return value is not None
        if self.operator == '!':
            return value is None
        have, want = _int64(value), _int64(next(iter(self.values)))
        if have is None or want is None:
            return False
        return have > want if self.operator == '>' else have < want


@dataclasses.dataclass(frozen=True)
class Selector:
    requirements: tuple[Requirement, ...] = ()

    def matches(self, obj: Mapping[str, Any]) -> bool:
        labels = (obj.get('metadata') or {}).get('labels')
        if not isinstance(labels, Mapping):  # an injected object a real server would have refused
            labels = {}
        encoded = {_bytes(str(k)): _bytes(str(v)) for k, v in labels.items()}
        return all(requirement.matches(encoded) for requirement in self.requirements)


def parse(text: str | None, *, in_bytes: bool = True) -> Selector:
    """``labels.Parse``: the selector, or :class:`SelectorError` with the server's message
    (``in_bytes``: worded as v1.37 words it, ``KubeVersion.label_errors_in_bytes``)."""
    parser = _Parser(_lex(_bytes(text or '')), in_bytes=in_bytes)
    return Selector(tuple(parser.parse()))


def _bytes(text: str) -> bytes:
    return text.encode('utf-8', 'surrogateescape')  # Go strings are bytes


def _int64(value: bytes | None) -> int | None:
    """``strconv.ParseInt(value, 10, 64)``."""
    if value is None or not _INT64.fullmatch(value):
        return None
    number = int(value)
    return number if -(2 ** 63) <= number < 2 ** 63 else None


def _lex(data: bytes) -> list[tuple[str, bytes]]:
    """``Lexer.Lex`` until the end: Go's ``read`` gives 0 at the end and for a NUL byte alike."""
    items: list[tuple[str, bytes]] = []
    position = 0

    def read() -> int:
        nonlocal position
        if position >= len(data):
            return 0
        position += 1
        return data[position - 1]

    while True:
        char = read()
        while char in _WHITESPACE:
            char = read()
        if char == 0:
            items.append((END, b''))
            return items
        position -= 1
        buffer = bytearray()
        if char in _SPECIAL:  # the longest run of special characters that is still an operator
            found = b''
            while (char := read()) != 0:
                if char not in _SPECIAL:
                    position -= 1
                    break
                buffer.append(char)
                if bytes(buffer).decode() in _OPERATORS:
                    found = bytes(buffer)
                elif found:
                    position -= 1
                    break
            items.append((found.decode(), found))  # every single special character is an operator
            continue
        while (char := read()) != 0:
            if char in _SPECIAL or char in _WHITESPACE:
                position -= 1
                break
            buffer.append(char)
        word = bytes(buffer)
        items.append((word.decode() if word in (b'in', b'notin') else IDENTIFIER, word))


class _Parser:
    """``labels.Parser``; ``values=True`` is its ``Values`` context, where in and notin are identifiers."""

    def __init__(self, items: list[tuple[str, bytes]], *, in_bytes: bool) -> None:
        self._items = items
        self._position = 0
        self._unit = 'bytes' if in_bytes else 'characters'
        self._two_slashes = 'a valid label key' if in_bytes else 'a qualified name'

    def _peek(self, *, values: bool = True) -> tuple[str, bytes]:
        token, literal = self._items[self._position]
        return (IDENTIFIER if values and token in ('in', 'notin') else token), literal

    def _take(self, *, values: bool = True) -> tuple[str, bytes]:
        item = self._peek(values=values)
        self._position += 1
        return item

    def parse(self) -> list[Requirement]:
        requirements: list[Requirement] = []
        while True:
            token, literal = self._peek()
            if token == END:
                return requirements
            if token not in (IDENTIFIER, '!'):
                raise SelectorError(f"found '{_text(literal)}', expected: !, identifier, or 'end of string'")
            try:
                requirements.append(self._requirement())
            except SelectorError as error:
                raise SelectorError(f'unable to parse requirement: {error}') from None
            token, literal = self._take()
            if token == END:
                return requirements
            if token != ',':
                raise SelectorError(f"found '{_text(literal)}', expected: ',' or 'end of string'")
            token, literal = self._peek()
            if token not in (IDENTIFIER, '!'):
                raise SelectorError(f"found '{_text(literal)}', expected: identifier after ','")

    def _requirement(self) -> Requirement:
        token, key = self._take()
        negated = token == '!'
        if negated:
            token, key = self._take()
        if token != IDENTIFIER:
            raise SelectorError(f"found '{_text(key)}', expected: identifier")
        if problems := _key_problems(key, unit=self._unit, two_slashes=self._two_slashes):
            raise SelectorError(f'<nil>: Invalid value: {_quote(key)}: {"; ".join(problems)}')
        if negated:  # what follows "!key" is for parse() to judge
            return Requirement(key, '!')
        if self._peek()[0] in (END, ','):
            return Requirement(key, 'exists')
        operator, literal = self._take(values=False)
        if operator not in _BINARY:
            raise SelectorError(f"found '{_text(literal)}', expected: in, notin, =, ==, !=, gt, lt")
        values = self._set() if operator in ('in', 'notin') else self._exact()
        _validate(key, operator, sorted(values), unit=self._unit)
        return Requirement(key, operator, frozenset(values))

    def _set(self) -> set[bytes]:
        token, literal = self._take()
        if token != '(':
            raise SelectorError(f"found '{_text(literal)}' expected: '('")
        token, literal = self._peek()
        if token == ')':  # "()" holds the empty value
            self._take()
            return {b''}
        if token not in (IDENTIFIER, ','):
            raise SelectorError(f"found '{_text(literal)}', expected: ',', ')' or identifier")
        values: set[bytes] = set()
        while True:  # an empty place between commas (or next to a parenthesis) is the empty value
            token, literal = self._take()
            if token not in (IDENTIFIER, ','):
                raise SelectorError(f"found '{_text(literal)}', expected: ',', or identifier")
            following, after = self._peek()
            if token == IDENTIFIER:
                values.add(literal)
                if following not in (')', ','):
                    raise SelectorError(f"found '{_text(after)}', expected: ',' or ')'")
            elif not values or following in (')', ','):
                values.add(b'')
            if following == ')':
                break
        self._take()  # the ')'
        return values

    def _exact(self) -> set[bytes]:
        if self._peek()[0] in (END, ','):
            return {b''}
        token, literal = self._take()
        if token != IDENTIFIER:
            raise SelectorError(f"found '{_text(literal)}', expected: identifier")
        return {literal}


def _validate(key: bytes, operator: str, values: list[bytes], *, unit: str) -> None:
    """``NewRequirement``'s checks of the values (sorted, as ``sets.String.List`` gives them)."""
    problems = []
    if operator in ('>', '<'):
        problems += [f"values[{i}]: Invalid value: {_quote(v)}: for 'Gt', 'Lt' operators, the value must be "
                     'an integer' for i, v in enumerate(values) if _int64(v) is None]
    for index, value in enumerate(values):
        rules = ([f'must be no more than 63 {unit}'] if len(value) > 63 else []) + (
            [] if re.fullmatch(_VALUE_FORMAT.encode(), value) else [_VALUE_RULE])
        if rules:
            where = f'values[{index}][{_text(key)}]'
            problems.append(f'{where}: Invalid value: {_quote(value)}: {"; ".join(rules)}')
    if len(problems) == 1:
        raise SelectorError(problems[0])
    if problems:  # an aggregate of several, as utilerrors writes it
        raise SelectorError('[' + ', '.join(dict.fromkeys(problems)) + ']')


def _key_problems(key: bytes, *, unit: str, two_slashes: str) -> list[str]:
    """``IsLabelKey``: an optional DNS-1123 subdomain prefix and '/', then a name."""
    parts = key.split(b'/')
    if len(parts) > 2:
        return [f'{two_slashes} {_NAME_RULE} with an optional DNS subdomain prefix and \'/\' '
                "(e.g. 'example.com/MyName')"]
    problems = []
    if len(parts) == 2:
        prefix = parts[0]
        if not prefix:
            problems.append('prefix part must be non-empty')
        else:
            if len(prefix) > 253:
                problems.append(f'prefix part must be no more than 253 {unit}')
            if not re.fullmatch(_SUBDOMAIN_FORMAT.encode(), prefix):
                problems.append(f'prefix part {_SUBDOMAIN_RULE}')
    name = parts[-1]
    if not name:
        problems.append('name part must be non-empty')
    elif len(name) > 63:
        problems.append(f'name part must be no more than 63 {unit}')
    if not re.fullmatch(_NAME_FORMAT.encode(), name):
        problems.append(f'name part {_NAME_RULE}')
    return problems


def _text(literal: bytes) -> str:
    return literal.decode('utf-8', 'surrogateescape')


def _quote(value: bytes) -> str:
    """Go's ``%q`` of a string: printable characters as they are, the others escaped."""
    escapes = {'\a': r'\a', '\b': r'\b', '\f': r'\f', '\n': r'\n', '\r': r'\r', '\t': r'\t', '\v': r'\v',
               '\\': r'\\', '"': r'\"'}
    out = []
    for char in _text(value):
        code = ord(char)
        if char in escapes:
            out.append(escapes[char])
        elif 0xDC80 <= code <= 0xDCFF:  # a byte that is not UTF-8
            out.append(f'\\x{code - 0xDC00:02x}')
        elif char.isprintable():
            out.append(char)
        elif code < 0x80:
            out.append(f'\\x{code:02x}')
        else:
            out.append(f'\\u{code:04x}' if code < 0x10000 else f'\\U{code:08x}')
    return '"' + ''.join(out) + '"'
