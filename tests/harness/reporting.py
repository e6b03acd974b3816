"""Figures a test wants in pytest's summary (CI logs and closing notes quote them)."""
import pytest

SOAK_FIGURES = pytest.StashKey[list[dict[str, object]]]()
FIGURES = pytest.StashKey[list[str]]()


def report(config: pytest.Config, topic: str, figures: dict[str, object]) -> None:
    """One line ``topic: key value, ...`` in the summary."""
    line = f'{topic}: ' + ', '.join(f'{key} {value}' for key, value in figures.items())
    config.stash.setdefault(FIGURES, []).append(line)
