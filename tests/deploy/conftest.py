"""
Figures the deploy tests put in pytest's summary: the RBAC proofs and the sizing.

A closing note or a CI log quotes them from there: which verbs each shape's run used
(from the request log), and what the operator measured next to what the manifests ask.
"""
import pytest

FIGURES = pytest.StashKey[list[str]]()


def report(config: pytest.Config, line: str) -> None:
    config.stash.setdefault(FIGURES, []).append(line)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    for line in config.stash.get(FIGURES, []):
        terminalreporter.write_line(f'deploy: {line}')
