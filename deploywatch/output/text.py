"""
The text format (``DEPLOYWATCH_FORMAT=text``): one short aligned line per event.

For a person watching rollouts in a terminal, like ``kubectl get deploy -w`` but with
what changed::

    TIME (UTC)    TYPE      NAMESPACE/NAME                READY   IMAGES              ROLLOUT      BY   ...
    16:22:17.927  MODIFIED  default/frontend              0/3     nginx:1.25          Progressing  kub...

ROLLOUT is ``summary.rollout.status``, BY the manager of ``changedBy`` with its
subresource (``-``: not known), CHANGES the diff, led by the rollout's move when
``old`` shows one. A line is a pure function of one JSON event, so a saved stream
renders the same later (``python -m deploywatch render``), with empty cells for fields
it predates. A long value pushes its line right rather than being cut; only on a
terminal, a line that would wrap loses its last changes (``… +N``), since a wrapped
line breaks the columns of every line after it.

Every cell comes from the cluster, where annotations and images are free text: a
newline would forge a line, an escape sequence recolour the terminal, a bidi override
reorder what is read, a zero-width space make two images look alike. So every cell
passes through :func:`visible`: one event is one line, no escape sequence reaches the
terminal but deploywatch's colour, and what differs looks different.
"""
import json
import os
import re
import sys
import unicodedata
from collections.abc import Callable, Mapping
from typing import Any

from deploywatch.model.diffing import IGNORED_PATHS
from deploywatch.model.rollout import rollout

HEADER = ('TIME (UTC)', 'TYPE', 'NAMESPACE/NAME', 'READY', 'IMAGES', 'ROLLOUT', 'BY', 'CHANGES')
WIDTHS = (12, 8, 28, 6, 18, 11, 30)  # the last column takes the rest
CLUSTER_WIDTH = 12  # the CLUSTER column, after TYPE, only in a stream with DEPLOYWATCH_CLUSTER
# Paths that change along with the ones worth showing, and only repeat them.
NOISE = ('/metadata/generation', '/status/observedGeneration', '/status/conditions')

FIRST = ['spec', 'metadata', 'status']  # the order changes are listed in: what was asked for first
COLOURS = {'ADDED': '32', 'MODIFIED': '33', 'DELETED': '31', 'RESYNC': '2'}  # green, yellow, red, dim


# What a terminal acts on: C0 controls and DEL, C1 controls (CSI, NEL...), lone surrogates, and the
# backslash itself, so that \x1b on screen is always an escaped ESC, never one typed as text. And what
# it shows as nothing, or uses to reorder what a person reads, so that two values that differ never
# look the same: every format character (Unicode category Cf: the bidi marks, embeddings, overrides
# and isolates of "Trojan Source", zero-width space, joiners, word joiner, invisible operators, BOM,
# soft hyphen, tags...), the line and paragraph separators (Zl, Zp), and the other code points
# Unicode calls default-ignorable (Hangul fillers, variation selectors, the combining grapheme
# joiner, Mongolian free variation selectors, and the ranges it reserves as such). Emoji joined
# with U+200D or U+FE0F show escaped too: text mode is for telling values apart; JSON keeps them.
UNSAFE = re.compile(
    '[\x00-\x1f\x7f-\x9f\xad\u034f\u0600-\u0605\u061c\u06dd\u070f\u0890\u0891\u08e2\u115f\u1160'
    '\u17b4\u17b5\u180b-\u180f\u200b-\u200f\u2028-\u202e\u2060-\u206f\u3164\ud800-\udfff'
    '\ufe00-\ufe0f\ufeff\uffa0\ufff0-\ufffb\U000110bd\U000110cd\U00013430-\U0001343f'
    '\U0001bca0-\U0001bca3\U0001d173-\U0001d17a\U000e0000-\U000e0fff\\\\]')
NAMED = {'\n': '\\n', '\r': '\\r', '\t': '\\t', '\\': '\\\\'}


def visible(text: str) -> str:
    """``text`` with every character a terminal would act on written as a visible escape."""
    return UNSAFE.sub(_escape, text)


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    code = ord(char)
    if char in NAMED:
        return NAMED[char]
    return f'\\x{code:02x}' if code <= 0xff else f'\\u{code:04x}' if code <= 0xffff else f'\\U{code:08x}'


def columns(cells: tuple[str, ...], *, cluster: bool = False) -> str:
    widths = (*WIDTHS[:2], CLUSTER_WIDTH, *WIDTHS[2:]) if cluster else WIDTHS
    padded = [cell.ljust(width) for cell, width in zip(cells, widths, strict=False)]
    return '  '.join([*padded, *cells[len(widths):]]).rstrip()


def header(event: Mapping[str, Any]) -> str:
    """The header line for a stream whose first event is ``event`` (a CLUSTER column if it names one)."""
    if isinstance(event.get('cluster'), str):
        return columns((*HEADER[:2], 'CLUSTER', *HEADER[2:]), cluster=True)
    return columns(HEADER)


def render(event: Mapping[str, Any], *, colour: bool = False, width: int | None = None) -> str:
    """One event's line; with ``width`` (a terminal's), CHANGES cut so that it fits (see above)."""
    summary = event.get('summary') or {}
    kind = str(event.get('type'))
    state = summary.get('rollout')
    cells: tuple[str, ...] = (
        str(event.get('time', ''))[11:23],
        kind,
        f"{event.get('namespace')}/{event.get('name')}",
        f"{summary.get('readyReplicas', 0)}/{summary.get('replicas', 0)}",
        ','.join(summary.get('images') or []) or '-',
        str(state.get('status', '')) if isinstance(state, Mapping) else '',
        _author(event),
    )
    cluster = event.get('cluster')
    if isinstance(cluster, str):
        cells = (*cells[:2], cluster, *cells[2:])
    # Escaped before padding, so that columns stay aligned.
    cells = tuple(visible(cell) for cell in cells)
    parts, marks = (list(map(visible, items)) for items in changes(event))
    line = columns((*cells, '  '.join([*parts, *marks])), cluster=isinstance(cluster, str))
    shown = len(parts)
    while width is not None and shown and _columns_taken(line) > width:  # the last changes go first
        shown -= 1
        cut = [*parts[:shown], f'… +{len(parts) - shown}', *marks]
        line = columns((*cells, '  '.join(cut)), cluster=isinstance(cluster, str))
    if colour and kind in COLOURS:
        start = line.index(kind, len(cells[0]))
        line = f'{line[:start]}\x1b[{COLOURS[kind]}m{kind}\x1b[0m{line[start + len(kind):]}'
    return line


def changes(event: Mapping[str, Any]) -> tuple[list[str], list[str]]:
    """
    ``path old→new`` for each change of a MODIFIED, spec first, then metadata and status; and
    the marks that follow them (what kind of ADDED or MODIFIED it is).
    """
    marks = []
    if event.get('type') == 'ADDED' and event.get('initial'):
        marks.append('(listed)')
    if event.get('inferred'):
        marks.append('(inferred: seen by listing again)')
    if any(op.get('path') == '' for op in event.get('diff') or []):  # the whole replaced: old not known
        return ['(previous state unknown)'], marks
    shown = sorted((op for op in event.get('diff') or []
                    if op['path'] not in IGNORED_PATHS and not op['path'].startswith(NOISE)),
                   key=lambda op: FIRST.index(op['path'].split('/')[1]) if op['path'].split('/')[1] in FIRST
                   else len(FIRST))
    parts = [_change(op, event.get('old')) for op in shown]
    moved = _rollout_moved(event)
    if moved:
        parts.insert(0, moved)
    return parts, marks


def _columns_taken(line: str) -> int:
    """How many columns a terminal gives ``line`` (escaped: no controls): two for wide characters."""
    return sum(0 if unicodedata.combining(char) else 1 + (unicodedata.east_asian_width(char) in 'WF')
               for char in line)


def terminal_width() -> int | None:
    """
    The width of stdout's terminal now; ``COLUMNS`` only where the terminal reports none (a
    pseudo-terminal nobody sized); None: unknown. Not ``COLUMNS`` first, as ``shutil`` reads it:
    an exported one is the width of some terminal when some process started, and a stream
    outlives resizes of the window it runs in.
    """
    try:
        columns = os.get_terminal_size(sys.stdout.fileno()).columns
    except (OSError, ValueError):  # not a terminal (any more), or stdout closed
        return None
    if columns <= 0:
        try:
            columns = int(os.environ.get('COLUMNS', ''))
        except ValueError:
            return None
    return columns if columns > 0 else None


def _author(event: Mapping[str, Any]) -> str:
    """BY: ``manager[/subresource]``; ``-`` when the author cannot be told; empty where there is none."""
    if 'changedBy' not in event:
        return ''
    author = event['changedBy']
    if not isinstance(author, Mapping):
        return '-'
    subresource = author.get('subresource')
    return f"{author.get('manager')}/{subresource}" if subresource else str(author.get('manager'))


def _rollout_moved(event: Mapping[str, Any]) -> str | None:
    """``rollout Progressing→Complete`` when a MODIFIED moved the rollout status (known from ``old``)."""
    state = (event.get('summary') or {}).get('rollout')
    old = event.get('old')
    if event.get('type') != 'MODIFIED' or not isinstance(state, Mapping) or not isinstance(old, Mapping):
        return None
    before = rollout(old)['status']
    return f"rollout {before}→{state.get('status')}" if before != state.get('status') else None


def _change(operation: Mapping[str, Any], old: Any) -> str:
    path = operation['path']
    tokens = [token.replace('~1', '/').replace('~0', '~') for token in path.split('/')[1:]]
    before = _resolve(old, tokens)
    if tokens[:4] == ['spec', 'template', 'spec', 'containers'] and tokens[-1:] == ['image']:
        return f"image {_value(before)}→{_short_image(before, operation.get('value'))}"
    where = '.'.join(tokens)
    if operation['op'] == 'remove':
        return f'{where} {_value(before)}→∅'
    if operation['op'] == 'add':
        value = operation.get('value')
        return f"{where} +{','.join(value)}" if isinstance(value, Mapping) else f'{where} ∅→{_value(value)}'
    return f"{where} {_value(before)}→{_value(operation.get('value'))}"


def _short_image(before: Any, after: Any) -> str:
    """``nginx:1.25→1.27`` rather than repeating the repository."""
    if isinstance(before, str) and isinstance(after, str) and ':' in before and ':' in after:
        repository, _, _ = before.rpartition(':')
        if after.startswith(repository + ':'):
            return after[len(repository) + 1:]
    return _value(after)


def _resolve(document: Any, tokens: list[str]) -> Any:
    for token in tokens:
        if isinstance(document, Mapping):
            document = document.get(token)
        elif isinstance(document, list) and token.isdigit() and int(token) < len(document):
            document = document[int(token)]
        else:
            return None
    return document


def _value(value: Any) -> str:
    if isinstance(value, Mapping):
        return '{…}'
    if isinstance(value, list):
        return '[…]'
    text = value if isinstance(value, str) else json.dumps(value)
    return text if len(text) <= 40 else text[:39] + '…'


class TextEncoder:
    """The text format as the writer's line encoder: a header, then one line per event."""

    def __init__(self, *, colour: bool, width: Callable[[], int | None] | None = None) -> None:
        self._colour = colour
        self._width = width  # the terminal's width now, for each line; None: piped, lines whole
        self._header_done = False

    @classmethod
    def for_stdout(cls) -> 'TextEncoder':
        """On a terminal: colour (unless ``NO_COLOR``) and lines fitted to its width. Piped: neither."""
        terminal = sys.stdout.isatty()
        return cls(colour=terminal and not os.environ.get('NO_COLOR'),
                   width=terminal_width if terminal else None)

    def __call__(self, event: Mapping[str, Any]) -> bytes:
        line = render(event, colour=self._colour, width=self._width() if self._width is not None else None)
        if not self._header_done:
            self._header_done = True
            line = header(event) + '\n' + line
        return line.encode('utf-8', errors='backslashreplace') + b'\n'
