"""
The benchmark's one table: each figure per client, deploywatch's ratio to each baseline, the target.

A ratio is always deploywatch's figure divided by the baseline's, whichever
way is better for that row (``better`` says which), so ``throughput 0.5x kubectl``
means half as many events a second, and ``start-up 2.0x kubectl`` twice as slow.
"""
from collections.abc import Callable
from typing import Any

CLIENTS = ('deploywatch', 'kubectl', 'raw', 'kopf')
TITLES = {'deploywatch': 'deploywatch', 'kubectl': 'kubectl', 'raw': 'raw aiohttp', 'kopf': 'Kopf on.event'}
BASELINES = ('kubectl', 'kopf', 'raw')

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


def _slope(result: dict[str, Any], low: int, high: int) -> float | None:
    """Peak RSS growth per object, in KB, between two start-up sizes."""
    small, large = _get(result, 'startup', low), _get(result, 'startup', high)
    if not small or not large or 'peak_rss_mb' not in small or 'peak_rss_mb' not in large:
        return None
    rss: float = (large['peak_rss_mb'] - small['peak_rss_mb']) * 1024 / (large['n'] - small['n'])
    return rss


Pick = Callable[[dict[str, Any]], Any]
Check = Callable[[dict[str, Any]], bool]


def _at(*path: Any) -> Pick:
    """A client's figure at a path in its results."""
    return lambda result: _get(result, *path)


def _ratio(values: dict[str, Any], base: str) -> float:
    return float(values['deploywatch']) / float(values[base])


def table(results: dict[str, Any]) -> list[Row]:
    clients: dict[str, Any] = results['clients']
    sizes: list[int] = results['plan']['sizes']
    updates, rate = results['plan']['updates'], results['plan']['rate']
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

    def slope(low: int) -> Pick:
        return lambda result: _slope(result, low, low + 1)

    def lag(result: dict[str, Any]) -> float | None:
        lags = [_get(result, 'latency', str(n), 'server_pacing_lag_ms') for n in sizes[:2]]
        return max((x for x in lags if x is not None), default=None)

    for index, n in enumerate(sizes):
        if index == 1:
            row(f'start-up, N={n:,} (s)', 'lower', _at('startup', index, 'seconds'),
                '<= 1.0x kubectl', lambda v: _ratio(v, 'kubectl') <= 1.0)
        else:
            row(f'start-up, N={n:,} (s)', 'lower', _at('startup', index, 'seconds'))
    row(f'throughput, M={updates:,} (events/s)', 'higher', _at('throughput', 'events_per_s'),
        '>= 1.5x kubectl, >= 3x kopf', lambda v: _ratio(v, 'kubectl') >= 1.5 and _ratio(v, 'kopf') >= 3.0)
    row('  client CPU during throughput (% of a core)', None, _at('throughput', 'client_cpu_pct'))
    for n in sizes[:2]:
        row(f'latency p50 at {rate:.0f} events/s, N={n:,} (ms)', 'lower', _at('latency', str(n), 'p50_ms'))
        row(f'latency p99 at {rate:.0f} events/s, N={n:,} (ms)', 'lower', _at('latency', str(n), 'p99_ms'),
            '<= 50 ms', lambda v: float(v['deploywatch']) <= 50)
        row(f'  latency max, N={n:,} (ms)', 'lower', _at('latency', str(n), 'max_ms'))
    for index, n in enumerate(sizes):
        if index == 1:
            row(f'peak RSS, N={n:,} (MB)', 'lower', _at('startup', index, 'peak_rss_mb'),
                '<= 250 MB', lambda v: float(v['deploywatch']) <= 250)
        else:
            row(f'peak RSS, N={n:,} (MB)', 'lower', _at('startup', index, 'peak_rss_mb'))
    for low in range(len(sizes) - 1):
        metric = f'  RSS growth per object, {sizes[low]:,}->{sizes[low + 1]:,} (KB)'
        if low == len(sizes) - 2:
            row(metric, 'lower', slope(low), 'linear: within 25% of the previous slope',
                lambda _: _linear(clients['deploywatch'], len(sizes)))
        else:
            row(metric, 'lower', slope(low))
    row(f'requests during start-up, N={sizes[0]:,}', 'lower',
        lambda r: _total(_get(r, 'startup', 0, 'requests')))
    row('requests per event (throughput window)', 'lower', _at('throughput', 'requests_per_event'), '0',
        lambda v: v['deploywatch'] == 0)
    row('write requests (whole run)', 'lower', _writes, '0', lambda v: v['deploywatch'] == 0)
    row('server CPU during throughput (% of a core)', None, _at('throughput', 'server_cpu_pct'))
    row('  bench driver CPU during throughput (% of a core)', None, _at('throughput', 'driver_cpu_pct'))
    row(f'  server pacer lateness at {rate:.0f}/s, max (ms)', None, lag)
    row(f'server CPU during start-up, N={sizes[-1]:,} (% of a core)', None,
        _at('startup', -1, 'server_cpu_pct'))
    resync = results.get('resync') or {}
    if resync:
        per_round = resync.get('requests_per_round')
        rows.append({'metric': f"requests per RESYNC round ({resync.get('rounds', 0):.1f} rounds of "
                               f"{resync.get('n', 0):,}, every {resync.get('interval_s')} s)",
                     'better': 'lower', 'values': {'deploywatch': per_round}, 'ratios': {}, 'target': '0',
                     'met': per_round == 0 if per_round is not None else None})
    return rows


def _total(requests: dict[str, int] | None) -> int | None:
    return sum(requests.values()) if requests is not None else None


def _writes(result: dict[str, Any]) -> int | None:
    runs = [*(_get(result, 'startup') or []), result.get('throughput') or {}]
    counted = [run['requests'].get('write', 0) for run in runs if isinstance(run.get('requests'), dict)]
    total = _get(result, 'requests_total', 'write') or 0
    return max(sum(counted), total) if counted else None


def _linear(result: dict[str, Any], sizes: int) -> bool:
    slopes = [_slope(result, i, i + 1) for i in range(sizes - 1)]
    if any(s is None for s in slopes) or len(slopes) < 2:
        return False
    first, last = float(slopes[-2] or 0), float(slopes[-1] or 0)
    return abs(last - first) <= 0.25 * abs(first)


def _number(value: Any) -> str:
    if value is None:
        return '-'
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
    return '\n'.join(text + notes + [f'\nERROR {e}' for e in errors])


def _runs(result: dict[str, Any]) -> list[dict[str, Any]]:
    return [*(result.get('startup') or []), result.get('throughput') or {},
            *(result.get('latency') or {}).values()]
