"""Figures a test wants in pytest's summary (CI logs and closing notes quote them)."""
import pytest

SOAK_FIGURES = pytest.StashKey[list[dict[str, object]]]()
