"""
The Dockerfile and .dockerignore, read so that a test can repeat the build without an engine.

Only what this Dockerfile uses is understood: ARG, FROM ... AS, WORKDIR, COPY (with
``--from``), RUN (shell form), ENV, USER, EXPOSE, ENTRYPOINT and CMD (exec form). Any
other instruction or flag fails the parse: a step added to the Dockerfile later must
not be skipped silently by the test that claims to repeat it.
"""
import dataclasses
import fnmatch
import json
import pathlib
import re
import shlex
import shutil

# The PATH of the official python images, which the Dockerfile's ENV PATH extends.
BASE_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'
KNOWN = {'ARG', 'FROM', 'WORKDIR', 'COPY', 'RUN', 'ENV', 'USER', 'EXPOSE', 'ENTRYPOINT', 'CMD'}


@dataclasses.dataclass
class Copy:
    sources: list[str]
    dest: str
    stage: str | None  # --from


@dataclasses.dataclass
class Stage:
    base: str
    name: str | None
    workdir: str = '/'
    copies: list[Copy] = dataclasses.field(default_factory=list)
    runs: list[str] = dataclasses.field(default_factory=list)
    env: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    user: str | None = None
    entrypoint: list[str] = dataclasses.field(default_factory=list)
    cmd: list[str] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class Image:
    args: dict[str, str]
    stages: list[Stage]

    @property
    def final(self) -> Stage:
        return self.stages[-1]

    @property
    def entrypoint(self) -> list[str]:
        return self.final.entrypoint

    @property
    def cmd(self) -> list[str]:
        return self.final.cmd

    @property
    def user(self) -> tuple[int, int]:
        assert self.final.user is not None, 'the image runs as root'
        uid, _, gid = self.final.user.partition(':')
        return int(uid), int(gid or uid)

    def stage(self, name: str) -> Stage:
        return next(stage for stage in self.stages if stage.name == name)

    @property
    def venv(self) -> str:
        """The one directory the final stage copies from a build stage: the venv, at the same path."""
        (copy,) = [copy for copy in self.final.copies if copy.stage is not None]
        assert copy.sources == [copy.dest], f'the venv moves ({copy}): a venv only works where it was made'
        return copy.dest

    def environment(self, *, venv: pathlib.Path) -> dict[str, str]:
        """The final stage's ENV, with the image's venv found at ``venv`` instead."""
        env = {'PATH': BASE_PATH}
        for key, value in self.final.env:
            expanded = re.sub(r'\$\{?(\w+)\}?', lambda m: env.get(m.group(1), ''), value)
            env[key] = expanded.replace(self.venv, str(venv))
        return env


def parse(path: pathlib.Path) -> Image:
    image = Image(args={}, stages=[])
    for instruction, rest in _instructions(path.read_text()):
        if instruction not in KNOWN:
            raise AssertionError(f'{path}: {instruction} is not understood by tests/deploy/dockerfile.py')
        if instruction == 'ARG':
            name, _, default = rest.partition('=')
            image.args[name] = default
            continue
        if instruction == 'FROM':
            words = shlex.split(rest)
            base = re.sub(r'\$\{(\w+)\}', lambda m: image.args[m.group(1)], words[0])
            stage_name = words[2] if len(words) == 3 and words[1].upper() == 'AS' else None
            image.stages.append(Stage(base=base, name=stage_name))
            continue
        stage = image.stages[-1]
        if instruction == 'WORKDIR':
            stage.workdir = str(pathlib.PurePosixPath(stage.workdir) / rest)
        elif instruction == 'COPY':
            words = shlex.split(rest)
            flags = [word for word in words if word.startswith('--')]
            assert all(flag.startswith('--from=') for flag in flags), f'COPY flags not understood: {flags}'
            paths = [word for word in words if not word.startswith('--')]
            stage.copies.append(Copy(sources=paths[:-1], dest=paths[-1],
                                     stage=flags[0].removeprefix('--from=') if flags else None))
        elif instruction == 'RUN':
            stage.runs.append(rest)
        elif instruction == 'ENV':
            stage.env.extend(tuple(word.split('=', 1)) for word in shlex.split(rest))  # type: ignore[misc]
        elif instruction == 'USER':
            stage.user = rest
        elif instruction in ('ENTRYPOINT', 'CMD'):
            words = json.loads(rest)  # exec form only: a shell form would not get SIGTERM
            setattr(stage, instruction.lower(), words)
    return image


def _instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with comments dropped and continuation lines joined."""
    logical: list[str] = []
    pending = ''
    for line in text.splitlines():
        if line.lstrip().startswith('#') or (not line.strip() and not pending):
            continue
        if line.rstrip().endswith('\\'):
            pending += line.rstrip()[:-1] + ' '
            continue
        logical.append(pending + line)
        pending = ''
    return [(parts[0].upper(), parts[1].strip() if len(parts) > 1 else '')
            for parts in (line.strip().split(None, 1) for line in logical)]


def ignored(root: pathlib.Path) -> list[tuple[bool, re.Pattern[str]]]:
    """The rules of ``root/.dockerignore``: (excludes?, pattern), the last match wins."""
    rules = []
    for raw in (root / '.dockerignore').read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith('#'):
            continue
        exclude = not line.startswith('!')
        pattern = line.lstrip('!').strip('/')
        regex = re.escape(pattern).replace(r'\*\*/', '(?:.*/)?').replace(r'\*\*', '.*')
        regex = regex.replace(r'\*', '[^/]*').replace(r'\?', '[^/]')
        rules.append((exclude, re.compile(regex + r'\Z')))
    return rules


def in_context(relative: pathlib.PurePosixPath, rules: list[tuple[bool, re.Pattern[str]]]) -> bool:
    """Whether Docker sends this file: a rule matching the path or a directory above it decides."""
    excluded = False
    candidates = [str(relative), *(str(parent) for parent in relative.parents if str(parent) != '.')]
    for exclude, pattern in rules:
        if any(pattern.match(candidate) for candidate in candidates):
            excluded = exclude
    return not excluded


def copy_context(stage: Stage, *, context: pathlib.Path, root: pathlib.Path) -> list[str]:
    """
    Do the stage's COPY instructions from ``context`` into ``root`` (the stage's "/").

    As Docker does: a directory source copies its contents, files the .dockerignore
    excludes are not there to copy. Returns the files copied, relative to the context.
    """
    rules = ignored(context)
    copied: list[str] = []
    for copy in stage.copies:
        assert copy.stage is None, 'only the copies from the build context are repeated'
        dest = root / (pathlib.PurePosixPath(stage.workdir) / copy.dest).relative_to('/')
        for source in copy.sources:
            files = [context / source] if (context / source).is_file() else sorted(
                path for path in (context / source).rglob('*') if path.is_file())
            for path in files:
                relative = pathlib.PurePosixPath(path.relative_to(context).as_posix())
                if not in_context(relative, rules):
                    continue
                if path == context / source:  # a file named as a source
                    into_directory = copy.dest.endswith('/') or len(copy.sources) > 1
                    target = dest / relative.name if into_directory else dest
                else:  # a file in a directory named as a source: its contents are copied
                    target = dest / relative.relative_to(source)
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, target)
                copied.append(str(relative))
    assert fnmatch.filter(copied, '*.pyc') == [], 'bytecode from the work tree reached the image'
    return copied
