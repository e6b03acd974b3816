"""
The benchmark's one table: each figure per client, deploywatch's ratio to each baseline, the target.

A ratio is always deploywatch's figure divided by the baseline's, whichever
way is better for that row (``better`` says which), so ``throughput 0.5x kubectl``
means half as many events a second, and ``start-up 2.0x kubectl`` twice as slow.
"""
import itertools
from collections.abc import Callable
from typing import Any

CLIENTS = ('deploywatch', 'today', 'kubectl', 'informer', 'raw', 'kopf')
TITLES = {'deploywatch': 'deploywatch', 'today': 'dw today', 'kubectl': 'kubectl', 'informer': 'Go informer',
          'raw': 'raw aiohttp', 'kopf': 'Kopf on.event'}
BASELINES = ('today', 'kubectl', 'informer', 'kopf', 'raw')
GOAL2 = 2 / 3  # start-up "faster than today by at least a third": at most two thirds of today's time
P99_NOISE = 1.1  # p99 varies by ~10 % between runs (bench/README.md): "no worse" allows that much
LINEAR = 1.25  # growth per object at the largest N at most this many times that at the smaller ones

Row = dict[str, Any]


def _get(data: Any, *path: Any) -> Any:
    for key in path:
        if isinstance(data, dict):
            data = data.get(key)
        elif isinstance(data, list) and isinstance(key, int) and -len(data) <= key < len(data):
            data = data[key]
        else:
            return None
        if data is None:
            return None
    return data


def _startup(result: dict[str, Any], n: int) -> dict[str, Any] | None:
    """A client's start-up run at N, if it has one."""
    return next((run for run in result.get('startup') or [] if run.get('n') == n), None)


def _slope(result: dict[str, Any], low: int, high: int) -> float | None:
    """Peak RSS growth per object, in KB, between the start-ups at N = ``low`` and ``high``."""
    small, large = _startup(result, low), _startup(result, high)
    if not small or not large or 'peak_rss_mb' not in small or 'peak_rss_mb' not in large:
        return None
    rss: float = (large['peak_rss_mb'] - small['peak_rss_mb']) * 1024 / (large['n'] - small['n'])
    return rss


Pick = Callable[[dict[str, Any]], Any]
Check = Callable[[dict[str, Any]], bool]


def _at(*path: Any) -> Pick:
    """A client's figure at a path in its results."""
    return lambda result: _get(result, *path)


def _at_n(n: int, field: str) -> Pick:
    """A client's figure of its start-up run at N."""
    return lambda result: _get(_startup(result, n), field)


def _ratio(values: dict[str, Any], base: str) -> float:
    return float(values['deploywatch']) / float(values[base])


def _held(result: dict[str, Any], n: int) -> float | None:
    """Throughput at N as a share of that at the plan's reference N (deploywatch, the informer)."""
    at = result.get('throughput_at') or {}
    high, low = _get(at, str(n), 'events_per_s'), _get(at, 'reference', 'events_per_s')
    return high / low if high and low else None


def _held_at(n: int) -> Pick:
    return lambda result: _held(result, n)


def _checks(result: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """Every consistency check of a client's runs, named by what it checked."""
    found = [(f"listing N={run['n']:,}", run['check'])
             for run in result.get('startup') or [] if 'check' in run]
    throughput = {'first': result.get('throughput'), **(result.get('throughput_at') or {})}
    seen: set[int] = set()
    for n, run in throughput.items():
        if isinstance(run, dict) and 'check' in run and id(run) not in seen:
            seen.add(id(run))
            found.append((f'throughput at N={n}', run['check']))
    found += [(f'latency N={n}', run['check']) for n, run in (result.get('latency') or {}).items()
              if 'check' in run]
    return found


def _consistency(result: dict[str, Any]) -> str | None:
    checks = _checks(result)
    if not checks:
        return None
    failed = [name for name, check in checks if not check.get('ok')]
    return f'all {len(checks)} ok' if not failed else f'{len(failed)} of {len(checks)} FAILED'


def table(results: dict[str, Any]) -> list[Row]:
    clients: dict[str, Any] = results['clients']
    plan = results['plan']
    sizes: list[int] = plan['sizes']
    scale: list[int] = plan.get('scale') or []
    reference: int = plan.get('reference', sizes[1])
    latency_sizes: list[int] = plan.get('latency_sizes') or sizes[:2]
    goal_sizes: list[int] = plan.get('goal_sizes') or []
    updates, rate = plan['updates'], plan['rate']
    for result in clients.values():  # the scale rows compare throughput with that at the reference N
        at = result.get('throughput_at')
        if at and str(reference) in at:
            at.setdefault('reference', at[str(reference)])
    rows: list[Row] = []

    def row(metric: str, better: str | None, pick: Pick, target: str = '', met: Check | None = None) -> None:
        values = {key: pick(result) for key, result in clients.items()}
        dw = values.get('deploywatch')
        ratios = {base: dw / values[base] for base in BASELINES
                  if isinstance(dw, (int, float)) and isinstance(values.get(base), (int, float))
                  and values[base]}
        try:
            verdict = met(values) if met is not None else None
        except (KeyError, TypeError, ZeroDivisionError):  # a client is missing or failed
            verdict = None
        rows.append({'metric': metric, 'better': better, 'values': values, 'ratios': ratios,
                     'target': target, 'met': verdict})

    def lag(result: dict[str, Any]) -> float | None:
        lags = [_get(result, 'latency', str(n), 'server_pacing_lag_ms') for n in latency_sizes]
        return max((x for x in lags if x is not None), default=None)

    for n in (*sizes, *scale):
        if n == reference:
            row(f'start-up, N={n:,} (s)', 'lower', _at_n(n, 'seconds'),
                '<= 1.0x kubectl', lambda v: _ratio(v, 'kubectl') <= 1.0)
        elif n in goal_sizes:
            row(f'start-up, N={n:,} (s)', 'lower', _at_n(n, 'seconds'),
                '<= 0.67x today (goal 2)', lambda v: _ratio(v, 'today') <= GOAL2)
        else:
            row(f'start-up, N={n:,} (s)', 'lower', _at_n(n, 'seconds'))
    row(f'throughput, M={updates:,} (events/s)', 'higher', _at('throughput', 'events_per_s'),
        '>= 3x kubectl (goal 1), >= 3x kopf',
        lambda v: _ratio(v, 'kubectl') >= 3.0 and _ratio(v, 'kopf') >= 3.0)
    row('  client CPU during throughput (% of a core)', None, _at('throughput', 'client_cpu_pct'))
    row('  events per CPU-second of the client during throughput', 'higher', _per_cpu_second)
    for n in (reference, *scale):
        row(f'throughput at N={n:,}, M={updates:,} (events/s)', 'higher',
            _at('throughput_at', str(n), 'events_per_s'))
    for n in scale:
        row(f'  throughput at N={n:,} / at N={reference:,}', 'higher', _held_at(n),
            '>= 0.8 (goal 3)', lambda v: float(v['deploywatch']) >= 0.8)
    for n in latency_sizes:
        row(f'latency p50 at {rate:.0f} events/s, N={n:,} (ms)', 'lower', _at('latency', str(n), 'p50_ms'))
        row(f'latency p99 at {rate:.0f} events/s, N={n:,} (ms)', 'lower', _at('latency', str(n), 'p99_ms'),
            f'<= 50 ms; <= {P99_NOISE:.1f}x today (goal 1)',
            lambda v: float(v['deploywatch']) <= 50 and _ratio(v, 'today') <= P99_NOISE)
        row(f'  latency max, N={n:,} (ms)', 'lower', _at('latency', str(n), 'max_ms'))
    _memory_rows(row, clients, sizes=sizes, scale=scale, reference=reference)
    row(f'requests during start-up, N={sizes[0]:,}', 'lower',
        lambda r: _total(_at_n(sizes[0], 'requests')(r)))
    row('requests per event (throughput window)', 'lower', _at('throughput', 'requests_per_event'), '0',
        lambda v: v['deploywatch'] == 0)
    row('write requests (whole run)', 'lower', _writes, '0', lambda v: v['deploywatch'] == 0)
    row('server CPU during throughput (% of a core)', None, _at('throughput', 'server_cpu_pct'))
    row('  bench driver CPU during throughput (% of a core)', None, _at('throughput', 'driver_cpu_pct'))
    row(f'  server pacer lateness at {rate:.0f}/s, max (ms)', None, lag)
    row(f'server CPU during start-up, N={sizes[-1]:,} (% of a core)', None,
        _at_n(sizes[-1], 'server_cpu_pct'))
    row('consistency: each object and change printed once, the last one too (every N)', None, _consistency,
        'all ok', lambda v: all(str(x).endswith(' ok') for x in v.values() if x is not None))
    resync = results.get('resync') or {}
    if resync:
        per_round = resync.get('requests_per_round')
        rows.append({'metric': f"requests per RESYNC round ({resync.get('rounds', 0):.1f} rounds of "
                               f"{resync.get('n', 0):,}, every {resync.get('interval_s')} s)",
                     'better': 'lower', 'values': {'deploywatch': per_round}, 'ratios': {}, 'target': '0',
                     'met': per_round == 0 if per_round is not None else None})
    return rows


def _per_cpu_second(result: dict[str, Any]) -> float | None:
    """
    Throughput over the client's CPU share: what a client does with the CPU it takes. Goal 1
    compares rates, and kubectl (Go) takes one and a half cores where a Python client has one.
    """
    rate, cpu = _get(result, 'throughput', 'events_per_s'), _get(result, 'throughput', 'client_cpu_pct')
    return rate / (cpu / 100) if rate and cpu else None


def _memory_rows(row: Callable[..., None], clients: dict[str, Any], *, sizes: list[int], scale: list[int],
                 reference: int) -> None:
    """Peak RSS at each N, per Deployment, and its growth between sizes; issue 4's and goal 3's targets."""
    for n in (*sizes, *scale):
        if n == reference:
            row(f'peak RSS, N={n:,} (MB)', 'lower', _at_n(n, 'peak_rss_mb'),
                '<= 250 MB', lambda v: float(v['deploywatch']) <= 250)
        elif n in scale:
            row(f'peak RSS, N={n:,} (MB)', 'lower', _at_n(n, 'peak_rss_mb'),
                '<= 600 MB (goal 3)', lambda v: float(v['deploywatch']) <= 600)
        else:
            row(f'peak RSS, N={n:,} (MB)', 'lower', _at_n(n, 'peak_rss_mb'))
    for n in (reference, *scale):
        row(f'  peak RSS per Deployment, N={n:,} (KB)', 'lower',
            lambda r, n=n: (_get(_startup(r, n), 'peak_rss_mb') or 0) * 1024 / n or None)
    for low, high in itertools.pairwise(sizes):  # no target: see the VmRSS rows below
        row(f'  RSS growth per object, {low:,}->{high:,} (KB)', 'lower',
            lambda r, low=low, high=high: _slope(r, low, high))
    for n in scale:
        row(f'  RSS growth per object, {reference:,}->{n:,} (KB)', 'lower',
            lambda r, n=n: _slope(r, reference, n))
    for n in (reference, *scale):
        metric = f'  RSS per Deployment above N={sizes[0]:,}\'s, N={n:,} (KB, VmRSS)'
        if n in scale:
            row(metric, 'lower', lambda r, n=n: _above(r, sizes[0], n),
                f'linear: <= {LINEAR:.2f}x that at N={reference:,} (goal 3)',
                lambda _, n=n: _scales(clients['deploywatch'], sizes[0], reference, n))
        else:
            row(metric, 'lower', lambda r, n=n: _above(r, sizes[0], n))


def _total(requests: dict[str, int] | None) -> int | None:
    return sum(requests.values()) if requests is not None else None


def _writes(result: dict[str, Any]) -> int | None:
    runs = [*(_get(result, 'startup') or []), result.get('throughput') or {},
            *(result.get('throughput_at') or {}).values()]
    counted = [run['requests'].get('write', 0) for run in runs if isinstance(run.get('requests'), dict)]
    total = _get(result, 'requests_total', 'write') or 0
    return max(sum(counted), total) if counted else None


def _above(result: dict[str, Any], smallest: int, n: int) -> float | None:
    """
    Resident memory per Deployment beyond the process's at the smallest N, in KB.

    VmRSS, not the peak: at small N the peak is a transient of the start-up (the
    imports, a LIST page, the spool's bound), which hides the per-object growth.
    """
    small, large = _startup(result, smallest), _startup(result, n)
    if not small or not large or 'rss_mb' not in small or 'rss_mb' not in large or n == smallest:
        return None
    per_object: float = (large['rss_mb'] - small['rss_mb']) * 1024 / (n - smallest)
    return per_object


def _scales(result: dict[str, Any], smallest: int, reference: int, n: int) -> bool:
    """Memory linear in N up to ``n``: per Deployment beyond the fixed part, no more than at ``reference``."""
    below, beyond = _above(result, smallest, reference), _above(result, smallest, n)
    return below is not None and beyond is not None and beyond <= LINEAR * below


def goals(results: dict[str, Any]) -> list[str]:
    """Issue 13's goals 1-3, each passed or failed, from this run's figures and its own baselines."""
    values = {row['metric']: row for row in results['table']}

    def verdicts(prefix: str, tag: str) -> list[bool | None]:
        return [row['met'] for metric, row in values.items()
                if metric.startswith(prefix) and tag in row['target']]

    def word(met: list[bool | None]) -> str:
        return 'n/a' if not met or None in met else 'PASS' if all(met) else 'FAIL'

    plan = results['plan']
    dw = results['clients'].get('deploywatch') or {}
    today = results['clients'].get('today') or {}
    lines = []
    thr = [row for metric, row in values.items() if metric.startswith('throughput, M=')]
    kubectl = thr[0]['ratios'].get('kubectl') if thr else None
    p99 = [f"N={n:,}: {_number(_get(dw, 'latency', str(n), 'p99_ms'))} vs today "
           f"{_number(_get(today, 'latency', str(n), 'p99_ms'))} ms" for n in plan.get('latency_sizes') or []]
    goal1 = [thr[0]['ratios'].get('kubectl', 0) >= 3.0 if kubectl is not None else None,
             *verdicts('latency p99', 'goal 1')]
    lines.append(f"Goal 1, throughput >= 3x kubectl with full lines, p99 at {plan['rate']:.0f}/s "
                 f"no worse than today: {word(goal1)} ({_number(kubectl)}x kubectl; p99 {'; '.join(p99)})")
    starts = [f"N={n:,}: {_number(_get(_startup(dw, n), 'seconds'))} s vs today "
              f"{_number(_get(_startup(today, n), 'seconds'))} s" for n in plan.get('goal_sizes') or []]
    lines.append(f"Goal 2, start-up at most 2/3 of today's: {word(verdicts('start-up', 'goal 2'))} "
                 f"({'; '.join(starts)})")
    scale = plan.get('scale') or []
    lines.append(f"Goal 3, {', '.join(f'{n:,}' for n in scale)} Deployments: peak RSS <= 600 MB, linear, "
                 f"throughput within 20 %: {word(verdicts('', 'goal 3'))} ("
                 + '; '.join(f"{n:,}: {_number(_get(_startup(dw, n), 'peak_rss_mb'))} MB, "
                             f"{_number(_held(dw, n))} of the throughput at {plan.get('reference', 0):,}"
                             for n in scale) + ')')
    return lines


def _number(value: Any) -> str:
    if value is None:
        return '-'
    if isinstance(value, str):
        return value
    if isinstance(value, float):
        return f'{value:,.0f}' if abs(value) >= 100 else f'{value:.2f}' if abs(value) < 10 else f'{value:.1f}'
    return f'{value:,}'


def render(results: dict[str, Any]) -> str:
    present = [c for c in CLIENTS if c in results['clients']]
    bases = [b for b in BASELINES if b in present]
    header = ['metric', *(TITLES[c] for c in present), *(f'dw/{b}' for b in bases), 'target', 'met']
    lines = [header]
    for row in results['table']:
        met = {True: 'yes', False: 'NO', None: ''}[row['met']]
        lines.append([row['metric'], *(_number(row['values'].get(c)) for c in present),
                      *(f"{row['ratios'][b]:.2f}x" if b in row['ratios'] else '' for b in bases),
                      row['target'], met])
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    left = {0, len(header) - 2, len(header) - 1}
    text = ['  '.join(cell.ljust(w) if i in left else cell.rjust(w)
                      for i, (cell, w) in enumerate(zip(line, widths, strict=True))).rstrip()
            for line in lines]
    text.insert(1, '-' * len(text[0]))
    errors = [f'{c}: {r["error"]}' for c in present for r in _runs(results['clients'][c]) if 'error' in r]
    notes = [f"\nEvents are ~{results.get('event_bytes', 0):,} bytes on the wire; ratios are deploywatch / "
             "baseline (for 'lower' rows < 1 is better, for throughput > 1 is better)."]
    profile = results.get('profile') or {}
    if profile.get('stages'):
        notes.append('\nWhere deploywatch spends its time under the throughput load (py-spy, % of samples):')
        notes += [f"  {s['pct']:5.1f}  {s['function']}" for s in profile['stages']]
    if results.get('note'):
        notes.append(f"\nNote: {results['note']}.")
    notes.append('')
    notes += goals(results)
    for key, why in (results.get('skipped') or {}).items():
        notes.append(f'Skipped {TITLES.get(key, key)}: {why}.')
    failed = [f'{TITLES.get(c, c)} {name}: {check}' for c in present
              for name, check in _checks(results['clients'][c]) if not check.get('ok')]
    notes += [f'INCONSISTENT {f}' for f in failed]
    before, after = results.get('load_before'), results.get('load_after')
    if before and after:
        notes.append(f"Machine load (1-min average) at start {before[0]:.2f}, at end {after[0]:.2f}, "
                     f"on {results['machine'].get('cores')} cores.")
    return '\n'.join(text + notes + [f'\nERROR {e}' for e in errors])


def _runs(result: dict[str, Any]) -> list[dict[str, Any]]:
    return [*(result.get('startup') or []), result.get('throughput') or {},
            *(result.get('throughput_at') or {}).values(), *(result.get('latency') or {}).values()]
