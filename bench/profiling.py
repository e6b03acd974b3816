"""
Where deploywatch spends its time under the throughput load: py-spy, summarised.

py-spy samples the running ``kopf run`` process from outside (``--pid``), so
deploywatch runs exactly as in the benchmark, with nothing imported into it,
and only the load window is sampled (attached after start-up, stopped when the
last event is read). ``--function`` folds samples by function rather than by
line; ``--native`` adds the interpreter's C frames, which is how time in the
cyclic garbage collector shows (without it, a collection is charged to
whatever Python line allocated when it started). The raw folded stacks are
kept (``profile-deploywatch.txt``: feed them to flamegraph.pl or speedscope),
and summarised three ways:

* *self*: the function on top of the stack (where the CPU actually is);
* *total*: every function on the stack (what it costs with what it calls);
* *stages*: each sample charged to the innermost frame that names a stage of
  the pipeline (our handler's steps, Kopf's watch, queueing and processing),
  so that the stages add up to 100 %.

Idle samples are counted apart and left out of the percentages: a thread
blocked on a lock (Kopf's thread-pool workers) or the event loop waiting in
``epoll_wait`` for the next bytes, which py-spy's native mode does not always
recognise as idle. (Many idle samples under this load would mean the load, not
deploywatch, sets the pace.) In *total*, the frames on nearly every stack (the
``kopf run`` -> asyncio chain) are left out too.
"""
import collections
import pathlib
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

PY_SPY = pathlib.Path(sys.executable).parent / 'py-spy'
RATE = 100  # samples a second: enough over a 30 s window, and cheap for the sampled process
ROOT_SHARE = 0.9  # a frame on at least this share of the stacks is the root chain, not a cost

# (part of the file path, function name or '' for any, stage), tried on each frame from the innermost out.
STAGES = (
    ('libpython', 'gc_collect_main', "Python's cyclic garbage collector (gc_collect_main)"),
    ('deploywatch/output/jsonl.py', '', 'deploywatch: encoding the line (jsonl.encode)'),
    ('deploywatch/output/', '', 'deploywatch: output, other (LineWriter.write: write + flush)'),
    ('deploywatch/model/diffing.py', '', 'deploywatch: diff (diffing.diff)'),
    ('deploywatch/model/objects.py', 'clean', 'deploywatch: clean-up + redaction (objects.clean)'),
    ('deploywatch/model/objects.py', '', 'deploywatch: summary (objects.summarize)'),
    ('deploywatch/model/events.py', '', 'deploywatch: event build, other (events.build)'),
    ('deploywatch/model/tracker.py', '', 'deploywatch: tracker, other (Tracker.observe, its memory)'),
    ('deploywatch/handlers.py', '', 'deploywatch: handler / delivery, other'),
    ('deploywatch/kube/listwatch.py', '', 'deploywatch: reading LIST and WATCH responses (orjson)'),
    ('deploywatch/kube/loop.py', '', 'deploywatch: watch loop (loop.supervise)'),
    ('kopf/_cogs/clients/', '', 'Kopf: API client (read watch stream, json.loads)'),
    ('kopf/_core/reactor/queueing.py', '', 'Kopf: queueing (multiplexing to per-object workers)'),
    ('kopf/_core/reactor/processing.py', '', 'Kopf: processing (causes, diff base, handler invocation)'),
    ('kopf/_core/actions/', '', 'Kopf: processing (causes, diff base, handler invocation)'),
    ('kopf/_core/intents/', '', 'Kopf: processing (causes, diff base, handler invocation)'),
    ('kopf/_cogs/structs/', '', 'Kopf: processing (causes, diff base, handler invocation)'),
    ('kopf/_core/engines/', '', 'Kopf: engines (logging, posting, probes)'),
)
OTHER = 'event loop and other (asyncio scheduling, epoll, threads)'


def _frame(text: str) -> tuple[str, str]:
    """``name (path/file.py:line)`` -> (name, path/file.py)."""
    name, _, where = text.rpartition(' (')
    return name, where.rstrip(')').rsplit(':', 1)[0]


def _stage(frames: list[str]) -> str:
    for text in reversed(frames):
        name, path = _frame(text)
        for part, function, stage in STAGES:
            if part in path and (not function or name == function):
                return stage
    return OTHER


def _idle(frames: list[str]) -> bool:
    """
    A thread waiting on a lock, or the event loop waiting for I/O. ``threading.Condition.wait``
    (deploywatch's packing and stdout threads between batches) shows as
    ``lock_PyThread_acquire_lock`` over ``pthread_cond_timedwait``.
    """
    inner = next((f for f in reversed(frames) if 'libc.so' not in f or f.startswith('pthread_cond_')), '')
    return (inner.startswith(('PyThread_acquire_lock', 'lock_PyThread_acquire_lock', 'pthread_cond_timedwait',
                              'pthread_cond_wait'))
            or frames[-1].startswith(('epoll_wait', 'select (')))


def summarise(folded: str, top: int = 15) -> dict[str, Any]:
    own: collections.Counter[str] = collections.Counter()
    total: collections.Counter[str] = collections.Counter()
    stages: collections.Counter[str] = collections.Counter()
    samples = idle = 0
    for line in folded.splitlines():
        stack, _, count_text = line.rpartition(' ')
        if not stack:
            continue
        count, frames = int(count_text), stack.split(';')
        if _idle(frames):
            idle += count
            continue
        samples += count
        own[frames[-1]] += count
        for frame in set(frames):
            total[frame] += count
        stages[_stage(frames)] += count

    def share(counter: collections.Counter[str], limit: int | None) -> list[dict[str, Any]]:
        return [{'function': name, 'samples': n, 'pct': 100 * n / max(samples, 1)}
                for name, n in counter.most_common(limit)]
    for frame in [f for f, n in total.items() if n >= ROOT_SHARE * samples]:
        del total[frame]
    return {'samples': samples, 'idle_samples': idle, 'self': share(own, top), 'total': share(total, top),
            'stages': share(stages, None)}


def profile(pid: int, load: Callable[[], dict[str, Any]], out: pathlib.Path, *,
            strip: str = '') -> dict[str, Any]:
    """
    Sample process ``pid`` while ``load()`` runs; keep the folded stacks and a summary in ``out``.

    ``strip`` is taken off file paths in the stacks (the snapshot deploywatch runs from).
    """
    folded, log = out / 'profile-deploywatch.txt', out / 'logs' / 'py-spy.stderr'
    spy = subprocess.Popen([str(PY_SPY), 'record', '--pid', str(pid), '--rate', str(RATE), '--function',
                            '--native', '--format', 'raw', '--output', str(folded)],
                           stdout=subprocess.DEVNULL, stderr=log.open('wb'))
    time.sleep(1.0)  # py-spy attaches
    loaded = load()
    spy.send_signal(signal.SIGINT)  # py-spy writes its output when interrupted
    try:
        spy.wait(timeout=30)
    except subprocess.TimeoutExpired:
        spy.kill()
        spy.wait()
    if not folded.exists():
        return {'error': f'py-spy wrote nothing; see {log}', 'throughput': loaded}
    if strip:
        folded.write_text(folded.read_text().replace(strip, ''))
    summary = summarise(folded.read_text())
    (out / 'profile-deploywatch.md').write_text(render(summary, loaded))
    return {'throughput': loaded, **summary, 'folded': folded.name}


def render(summary: dict[str, Any], loaded: dict[str, Any]) -> str:
    rows = [f"# deploywatch under the throughput load, py-spy at {RATE} Hz",
            '', f"{summary['samples']} busy samples ({summary['idle_samples']} idle ones left out); "
                f"throughput while sampled: "
                f"{loaded.get('events_per_s', float('nan')):,.0f} events/s.", '']
    for title, key in (('Stages (each sample charged once, innermost stage)', 'stages'),
                       ('Self time (top of stack)', 'self'), ('Total time (anywhere on the stack)', 'total')):
        rows += [f'## {title}', '', '| % of samples | function |', '|---:|---|']
        rows += [f"| {row['pct']:.1f} | `{row['function']}` |" for row in summary[key]]
        rows.append('')
    return '\n'.join(rows)
