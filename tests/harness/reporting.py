"""
Figures a test wants in pytest's summary (CI logs and closing notes quote them).

They are kept in ``config.stash`` and printed by ``pytest_terminal_summary``. Under
pytest-xdist (``make test`` runs the suite on several workers) each worker has a stash
of its own, which never reaches the controller that prints the summary: :func:`send`
puts a worker's lists in its ``workeroutput`` when it finishes, and :func:`receive`
appends them, on the controller, to the same keys, so the hooks print them as before.
"""
from collections.abc import Mapping
from typing import Any

import pytest

SOAK_FIGURES = pytest.StashKey[list[dict[str, object]]]()
FIGURES = pytest.StashKey[list[str]]()


def report(config: pytest.Config, topic: str, figures: dict[str, object]) -> None:
    """One line ``topic: key value, ...`` in the summary."""
    line = f'{topic}: ' + ', '.join(f'{key} {value}' for key, value in figures.items())
    config.stash.setdefault(FIGURES, []).append(line)


Carried = Mapping[str, pytest.StashKey[list[Any]]]


def send(config: pytest.Config, carried: Carried) -> None:
    """On an xdist worker (it has ``workeroutput``): its figures, for the controller."""
    output: dict[str, object] | None = getattr(config, 'workeroutput', None)
    if output is not None:
        for name, key in carried.items():
            figures: list[Any] = config.stash.get(key, [])
            output[f'deploywatch-figures-{name}'] = list(figures)


def receive(config: pytest.Config, output: Mapping[str, object], carried: Carried) -> None:
    """On the controller: one finished worker's figures, added to the controller's own."""
    for name, key in carried.items():
        figures = output.get(f'deploywatch-figures-{name}')
        if isinstance(figures, list) and figures:
            config.stash.setdefault(key, []).extend(figures)
