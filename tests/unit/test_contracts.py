"""
The import contracts of ``pyproject.toml`` (``lint-imports``) hold on the tree, and break
where they should: a ``kopf._`` import outside ``deploywatch.kube.kopfcompat``, a lower
layer importing a higher one. Each case lints a copy of the package with one import planted.
"""
import pathlib
import shutil
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
LINT = pathlib.Path(sys.executable).with_name('lint-imports')


def lint(where: pathlib.Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(LINT), '--no-cache'], cwd=where, capture_output=True, text=True, timeout=120,
                          check=False)


def planted(tmp_path: pathlib.Path, module: str, line: str) -> pathlib.Path:
    shutil.copytree(ROOT / 'deploywatch', tmp_path / 'deploywatch',
                    ignore=shutil.ignore_patterns('__pycache__'))
    shutil.copy(ROOT / 'pyproject.toml', tmp_path / 'pyproject.toml')
    with (tmp_path / module).open('a') as file:
        file.write(f'\n{line}  # noqa\n')
    return tmp_path


def test_the_tree_keeps_every_contract() -> None:
    result = lint(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert 'broken' in result.stdout and ' 0 broken' in result.stdout


@pytest.mark.parametrize('module', ['deploywatch/kube/loop.py', 'deploywatch/handlers.py',
                                    'deploywatch/model/ids.py'])
def test_a_private_kopf_import_outside_kopfcompat_breaks_the_contract(tmp_path: pathlib.Path,
                                                                      module: str) -> None:
    result = lint(planted(tmp_path, module, 'from kopf._cogs.clients import api'))
    assert result.returncode != 0
    importer = module.removesuffix('.py').replace('/', '.')
    assert f'{importer} -> kopf._cogs.clients.api' in result.stdout, result.stdout


def test_the_same_import_in_kopfcompat_keeps_it(tmp_path: pathlib.Path) -> None:
    line = 'from kopf._core.engines import peering'
    result = lint(planted(tmp_path, 'deploywatch/kube/kopfcompat.py', line))
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_lower_layer_importing_a_higher_one_breaks_the_layers(tmp_path: pathlib.Path) -> None:
    result = lint(planted(tmp_path, 'deploywatch/base/encoding.py', 'from deploywatch.runtime import state'))
    assert result.returncode != 0
    assert 'deploywatch.base.encoding -> deploywatch.runtime.state' in result.stdout, result.stdout
