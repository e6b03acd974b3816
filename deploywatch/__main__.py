"""
``python -m deploywatch`` (also the ``deploywatch`` command): help, checks, rendering.

deploywatch runs under Kopf (``kopf run operator/handlers.py ...``); this is the
companion a person reaches for first: ``--help`` lists every ``DEPLOYWATCH_*`` variable,
generated from ``Settings`` so it cannot drift from what is validated; ``check``
validates the environment and the credentials without connecting; ``render`` turns a
saved JSON stream into the text format.
"""
import argparse
import dataclasses
import json
import os
import sys
import textwrap
from collections.abc import Sequence
from typing import TextIO

from deploywatch.base import settings
from deploywatch.kube import preflight
from deploywatch.output.text import TextEncoder

USAGE = """\
deploywatch prints every apps/v1 Deployment event as one JSON line on stdout.
It runs under Kopf:

  kopf run operator/handlers.py --namespace=default   # one namespace; repeatable; globs
  kopf run operator/handlers.py --all-namespaces       # the whole cluster

Namespaces, peering, liveness and log verbosity are Kopf's flags (kopf run --help).
Everything else is an environment variable:
"""


def variables_help() -> str:
    lines = []
    for field in dataclasses.fields(settings.Settings):
        default = field.default
        if isinstance(default, frozenset):
            default = ','.join(sorted(default))
        if isinstance(default, bool):
            default = str(default).lower()
        shown = 'unset' if default in (None, '') else default
        lines.append(f"  {field.metadata['env']}  (default: {shown}; accepts {field.metadata['accepts']})")
        lines.extend(textwrap.wrap(field.metadata['doc'], width=88, initial_indent=' ' * 6,
                                   subsequent_indent=' ' * 6))
    return '\n'.join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog='deploywatch', formatter_class=argparse.RawDescriptionHelpFormatter,
        description=USAGE + '\n' + variables_help(),
        epilog=textwrap.fill(
               'The event schema: deploywatch/schema/event-v1.json (schema deploywatch/v1). Each line '
               'has an id (the same on every replica and across restarts for the same change: '
               'de-duplicate on it), summary.rollout (Progressing, Complete, Failed or Paused, as '
               'kubectl rollout status decides) and, on ADDED and MODIFIED, changedBy (the field '
               'manager that made the change, from managedFields; null when it cannot be told).',
               width=88, break_on_hyphens=False))
    commands = parser.add_subparsers(dest='command', metavar='{check,render}')
    commands.add_parser('check', help='validate DEPLOYWATCH_* and the credentials without connecting')
    render = commands.add_parser('render', help='print a saved JSON stream in the text format')
    render.add_argument('file', nargs='?', type=argparse.FileType('r'), default=sys.stdin,
                        help='a file of deploywatch JSON lines (default: stdin)')
    arguments = parser.parse_args(argv)

    if arguments.command == 'check':
        return check()
    if arguments.command == 'render':
        return render_stream(arguments.file)
    parser.print_help()
    return 0


def check() -> int:
    """Exit 0 with a summary, or 2 with the same one line ``kopf run`` would print."""
    try:
        loaded = settings.Settings.from_env(os.environ)
        preflight.check_credentials(os.environ)
    except settings.Misconfigured as error:
        print(f'deploywatch: {error}', file=sys.stderr, flush=True)
        return 2
    for name in settings.Settings.unknown_variables(os.environ):
        print(f'deploywatch: warning: {name} is not a deploywatch setting (a typo?)', file=sys.stderr)
    values = ', '.join(f'{field.name}={getattr(loaded, field.name)!r}'
                       for field in dataclasses.fields(loaded))
    print(f'deploywatch: configuration ok: {values}')
    return 0


def render_stream(source: TextIO) -> int:
    encoder = TextEncoder.for_stdout()
    try:
        for number, line in enumerate(source, start=1):
            if not line.strip():
                continue
            try:
                event = json.loads(line)
            except ValueError:
                print(f'deploywatch: line {number} is not JSON; skipped', file=sys.stderr)
                continue
            sys.stdout.buffer.write(encoder(event))
            sys.stdout.buffer.flush()
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0


if __name__ == '__main__':
    sys.exit(main())
