"""
``make bench-apiserver``'s checks, table and goal verdicts, from the figures alone.

Each figure is shown as the median of the runs and their spread (min-max): with three
runs the median is the middle one, and the spread says how far one run can be off
(Go's garbage collector makes an API server's RSS noisy). The checks read the client's
whole stdout after its run, never during it, so they cost the measurement nothing.
"""
import json
import statistics
from collections.abc import Iterable
from typing import Any

from bench.populate import CONCURRENCY

Figures = dict[str, Any]

TITLES = {'deploywatch': 'deploywatch (pages)', 'streaming': 'deploywatch streaming (40f6bee)',
          'informer': 'Go informer', 'informer-json': 'Go informer, JSON',
          'informer-json-list': 'Go informer, JSON, LIST', 'kubectl': 'kubectl get -w'}
COLUMNS = (('apiserver_cpu_s', 'apiserver CPU s', '.2f'),
           ('apiserver_rss_growth_mb', 'apiserver RSS +MB', '.0f'),
           ('etcd_cpu_s', 'etcd CPU s', '.2f'), ('seconds', 'time s', '.2f'),
           ('client_cpu_s', 'client CPU s', '.2f'), ('client_peak_rss_mb', 'client peak MB', '.0f'),
           ('request_count', 'requests', '.0f'))
GOAL_FIGURES = (('apiserver_cpu_s', 'API server CPU-seconds'),
                ('apiserver_rss_growth_mb', 'API server RSS growth (MB)'),
                ('seconds', 'time to the last initial line (s)'))
NO_RELIST = {'kubectl': 'n/a: kubectl get -w does not relist, it ends with its watch',
             'informer-json': 'not measured: a diagnostic row (what JSON costs the server), outside the goal',
             'informer-json-list': 'not measured: a diagnostic row (a JSON LIST), outside the goal'}


def _lines(output: bytes) -> list[bytes]:
    return [line for line in output.split(b'\n') if line.strip()]


def _uid(obj: Any) -> str | None:
    metadata = obj.get('metadata') if isinstance(obj, dict) else None
    uid = metadata.get('uid') if isinstance(metadata, dict) else None
    return uid if isinstance(uid, str) else None


def _result(*, want: int, objects: Iterable[str | None], others: int, **more: Any) -> Figures:
    uids = list(objects)
    distinct = len({u for u in uids if u is not None})
    return {'want': want, 'objects': len(uids), 'distinct_uids': distinct, 'other_lines': others, **more,
            'ok': len(uids) == want and distinct == want and others == 0}


def initial_check(key: str, output: bytes, *, n: int) -> Figures:
    """Whether a client printed each of the N Deployments once, as an initial object, and nothing else."""
    lines = _lines(output)
    if key in ('deploywatch', 'streaming'):
        events = [json.loads(line) for line in lines]
        initial = [e for e in events if e.get('type') == 'ADDED' and e.get('initial') is True]
        return _result(want=n, objects=(e.get('uid') for e in initial), others=len(events) - len(initial))
    if key.startswith('informer'):
        adds = [line for line in lines if line.startswith(b'AddFunc ')]
        uids = (_uid(json.loads(line[8:])) for line in adds)
        return _result(want=n, objects=uids, others=len(lines) - len(adds))
    objects: list[str | None] = []  # kubectl: one event per line, the initial listing a List per page
    for line in lines:
        shown = json.loads(line).get('object') or {}
        objects += [_uid(item) for item in shown.get('items', [])] if 'items' in shown else [_uid(shown)]
    return _result(want=n, objects=objects, others=0, lines=len(lines))


def relist_check(key: str, output: bytes, *, printed: int, n: int) -> Figures:
    """
    After a relist of unchanged objects: deploywatch prints nothing (it knows them all), the
    informer hands each object once to UpdateFunc (client-go's Replace).
    """
    lines = _lines(output)
    if key in ('deploywatch', 'streaming'):
        return _result(want=0, objects=(), others=len(lines) - printed)
    updates = [line for line in lines if line.startswith(b'UpdateFunc ')]
    adds = sum(line.startswith(b'AddFunc ') for line in lines)
    return _result(want=n, objects=(_uid(json.loads(line[11:])) for line in updates),
                   others=len(lines) - adds - len(updates))


def _spread(values: list[float]) -> Figures:
    return {'median': statistics.median(values), 'min': min(values), 'max': max(values), 'runs': len(values)}


def _figure(run: Figures, field: str) -> float | None:
    """A run's figure; ``request_count`` is the sum of its requests by verb (the audit log's)."""
    if field == 'request_count':
        return sum(run['requests'].values()) if 'requests' in run else None
    value = run.get(field)
    return None if value is None else float(value)


def summary(runs: dict[str, list[Figures]]) -> dict[str, dict[str, Figures]]:
    """Per client and phase (initial, relist): each figure's median and spread, whether every check held."""
    result: dict[str, dict[str, Figures]] = {}
    for key, results in runs.items():
        for phase in ('initial', 'relist'):
            done = [r[phase] for r in results if phase in r]
            if not done:
                continue
            good = [r for r in done if 'error' not in r]
            row: Figures = {'runs': len(done), 'errors': [r['error'] for r in done if 'error' in r],
                            'checks_ok': all(r.get('check', {}).get('ok') for r in done)}
            for field, _, _ in COLUMNS:
                values = [value for r in good if (value := _figure(r, field)) is not None]
                if values:
                    row[field] = _spread(values)
            result.setdefault(key, {})[phase] = row
    return result


def goals(table: dict[str, dict[str, Figures]]) -> list[Figures]:
    """
    The goal: deploywatch costs the API server no more than the Go informer
    (CPU-seconds, RSS growth) and reaches its last initial line no later; every check holds.
    Medians are compared, as they are.
    """
    verdicts: list[Figures] = []
    ours, theirs = (table.get(k, {}).get('initial', {}) for k in ('deploywatch', 'informer'))
    for field, what in GOAL_FIGURES:
        mine, base = (row.get(field, {}).get('median') for row in (ours, theirs))
        verdicts.append({'part': what, 'deploywatch': mine, 'informer': base,
                         'pass': mine is not None and base is not None and mine <= base})
    failing = [f'{k} {phase}' for k, phases in table.items() for phase, row in phases.items()
               if not row['checks_ok'] or row['errors']]
    verdicts.append({'part': 'every consistency check', 'failing': failing, 'pass': not failing})
    return verdicts


def _cell(row: Figures, field: str, form: str) -> str:
    figure = row.get(field)
    if not figure:
        return '-'
    median, low, high = (format(figure[k], form) for k in ('median', 'min', 'max'))
    return median if figure['runs'] == 1 else f'{median} ({low}-{high})'


def brief(result: Figures) -> str:
    """One progress line for one run of a client."""
    parts = []
    for phase in ('initial', 'relist'):
        r = result.get(phase)
        if r is None:
            continue
        if 'error' in r:
            parts.append(f"{phase}: {r['error']}")
            continue
        check = 'ok' if r.get('check', {}).get('ok') else f"CHECK FAILED {r.get('check')}"
        parts.append(f"{phase} {r['seconds']:.2f}s, apiserver {r['apiserver_cpu_s']:.2f} CPU-s "
                     f"+{r['apiserver_rss_growth_mb']:.0f} MB, etcd {r['etcd_cpu_s']:.2f} CPU-s, {check}")
    return '; '.join(parts)


def render(results: Figures) -> str:
    made = results.get('made') or {}
    load = ['/'.join(f'{x:.2f}' for x in results[when]) for when in ('load_before', 'load_after')]
    out = [f"make bench-apiserver: kube-apiserver v{results.get('version', '1.37')}, "
           f"N = {results['count']:,} Deployments in {results['namespaces']} namespaces, "
           f"{results['repeats']} runs per client (median (min-max)); "
           f"load average (1/5/15 min) {load[0]} at the start, {load[1]} at the end; "
           f"{results['machine']['cores']} cores",
           f"Deployments made through the API (a POST, then a PUT of the status; {CONCURRENCY} at once): "
           f"{made.get('per_second', 0):,.0f}/s, {made.get('requests', 0) / made.get('seconds', 1):,.0f} "
           f"requests/s, {made.get('object_bytes', 0):,} bytes each as JSON; kube-controller-manager "
           'stopped before; every client with the admin kubeconfig; kube-apiserver restarted and idle before '
           'each window', '']
    header = ['client', 'phase', *(title for _, title, _ in COLUMNS), 'checks']
    rows = [header]
    for key, title in TITLES.items():
        phases = results['summary'].get(key)
        if phases is None:
            if key in results.get('skipped', {}):
                rows.append([title, '-', f"skipped: {results['skipped'][key]}"])
            continue
        for phase in ('initial', 'relist'):
            row = phases.get(phase)
            if row is None:
                if phase == 'relist' and key in NO_RELIST:
                    rows.append([title, phase, NO_RELIST[key]])
                continue
            checks = 'ok' if row['checks_ok'] and not row['errors'] else 'FAILED'
            rows.append([title, phase, *(_cell(row, field, form) for field, _, form in COLUMNS), checks])
    widths = [max(len(r[i]) for r in rows if len(r) == len(header)) for i in range(len(header))]
    for row in rows:
        if len(row) == len(header):
            out.append('  '.join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
        else:
            out.append('  '.join([row[0].ljust(widths[0]), row[1].ljust(widths[1]), *row[2:]]))
    out += ['', 'Goal: deploywatch costs the API server no more than the Go informer does '
                '(CPU-seconds and RSS growth), and reaches its last initial line no later, with every '
                'consistency check holding (medians compared):']
    for verdict in results['goals']:
        mark = 'PASS' if verdict['pass'] else 'FAIL'
        if 'failing' in verdict:
            detail = 'all hold' if not verdict['failing'] else 'failing: ' + ', '.join(verdict['failing'])
        else:
            mine, base = verdict['deploywatch'], verdict['informer']
            detail = (f'deploywatch {mine:.2f}, informer {base:.2f}' if mine is not None and base is not None
                      else 'not measured')
        out.append(f"  {mark}  {verdict['part']}: {detail}")
    return '\n'.join(out)
