"""
Settings that ``kopf run``'s command line cannot carry, read from ``DEPLOYWATCH_*``.

Namespaces, peering, liveness and log verbosity stay Kopf's flags; everything else is
one environment variable per field of :class:`Settings`. The dataclass is the only
place a setting is defined: its field metadata names the variable, says what it
accepts and parses it, so the validation, the error text and ``--help`` cannot drift
apart. Validation happens once, in Kopf's start-up handler, before anything connects:
a bad value (:class:`Misconfigured`) stops the program with one line a human can act
on, not a traceback after the first API call.
"""
import dataclasses
import math
import os
import pathlib
import re
from collections.abc import Callable, Mapping
from typing import Any

from deploywatch.base.selectors import Selector, SelectorError

PREFIX = 'DEPLOYWATCH_'
# The shortest resync interval: what the test suite uses to see RESYNC quickly. Shorter is no
# longer a periodic re-announcement but a stream of nothing else (each round prints every
# Deployment), and far more likely a typo ("0.001" for "1000").
MIN_RESYNC_SECONDS = 0.1
# A healthy watch of a quiet cluster hears from the API server about every 70 s (Kopf reopens a
# silent stream, and the answer counts); a bound under a second is surely a typo for a longer one.
MIN_STALL_SECONDS = 1.0
EVENT_TYPES = frozenset({'ADDED', 'MODIFIED', 'DELETED', 'RESYNC'})


class Misconfigured(Exception):
    """
    What stops deploywatch before it connects: a setting, the credentials, the state file or
    the metrics port it cannot use. Its text is the one line a user reads; the runtime's
    lifecycle prints it and exits with status 2.
    """


class SettingsError(Misconfigured, ValueError):
    """One environment variable holds a value deploywatch cannot use."""


def _seconds(text: str) -> float:
    value = float(text)  # ValueError for "abc"
    if not math.isfinite(value) or value < 0:  # "1e999" parses as inf; "nan" as nan
        raise ValueError(text)
    return value


def _resync_seconds(text: str) -> float:
    value = _seconds(text)
    if 0 < value < MIN_RESYNC_SECONDS:
        raise ValueError(text)
    return value


def _stall_seconds(text: str) -> float:
    value = _seconds(text)
    if 0 < value < MIN_STALL_SECONDS:
        raise ValueError(text)
    return value


def _port(text: str) -> int | None:
    if not text.strip():
        return None
    value = int(text)  # ValueError for "http" or "8081.5"
    if not 0 < value < 65536:
        raise ValueError(text)
    return value


def _boolean(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in {'1', 'true', 'yes', 'on'}:
        return True
    if lowered in {'0', 'false', 'no', 'off'}:
        return False
    raise ValueError(text)


def _state_path(text: str) -> pathlib.Path | None:
    if not text.strip():
        return None
    path = pathlib.Path(text).expanduser()
    if not path.parent.is_dir() or not os.access(path.parent, os.W_OK) or path.is_dir():
        raise ValueError(text)
    return path


def _choice(*allowed: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        value = text.strip().lower()
        if value not in allowed:
            raise ValueError(text)
        return value
    return parse


def _types(text: str) -> frozenset[str]:
    names = {part.strip().upper() for part in text.split(',') if part.strip()}
    if not names or not names <= EVENT_TYPES:
        raise ValueError(text)
    return frozenset(names)


CLUSTER_NAME = re.compile(r'[A-Za-z0-9]([A-Za-z0-9._-]{0,251}[A-Za-z0-9])?')


def _cluster(text: str) -> str | None:
    # It goes into a URI's authority (CloudEvents' source) and onto terminals: letters, digits, . _ - only.
    name = text.strip()
    if not name:
        return None
    if not CLUSTER_NAME.fullmatch(name):
        raise ValueError(text)
    return name


def _label_selector(text: str) -> str:
    # SelectorError where the API server would answer 400 (to every LIST and WATCH, forever).
    Selector.parse(text)
    return text.strip(' \t\r\n')  # the selector's own whitespace, nothing the server would read


def _setting(*, env: str, default: Any, parse: Callable[[str], Any], accepts: str, doc: str) -> Any:
    return dataclasses.field(default=default, metadata={
        'env': PREFIX + env, 'parse': parse, 'accepts': accepts, 'doc': doc,
    })


@dataclasses.dataclass(frozen=True)
class Settings:
    """
    What deploywatch does beyond Kopf's flags. Defaults are safe for a first run.
    """

    resync_seconds: float = _setting(
        env='RESYNC_SECONDS', default=600.0, parse=_resync_seconds,
        accepts=f'a finite number of seconds: 0 (resync off) or at least {MIN_RESYNC_SECONDS}',
        doc="Every this many seconds, each live Deployment is printed again as RESYNC. "
            "Ten minutes by default: often enough for an audit store to notice a gap, "
            "rare enough that 10,000 Deployments do not flood the stream. At least "
            f"{MIN_RESYNC_SECONDS} s: a shorter interval would print little but RESYNC. Rounds are "
            "due at whole multiples of the interval in Unix time, and a RESYNC's id names its "
            "round, so replicas with the same interval print the same ids.",
    )
    redact: bool = _setting(
        env='REDACT', default=True, parse=_boolean,
        accepts='true or false',
        doc="Replace every container env[].value with \"<redacted>\" in object, old and diff. "
            "On by default: Deployments routinely carry credentials in plain env values, "
            "and the stream goes to log stores with wider access than the cluster.",
    )

    state_file: pathlib.Path | None = _setting(
        env='STATE_FILE', default=None, parse=_state_path,
        accepts='a file path in an existing, writable directory (empty: no state file)',
        doc="Keep what was printed last in this file, so that a restart prints only what "
            "changed while deploywatch was down (ADDED, MODIFIED and DELETED marked inferred) "
            "instead of every Deployment again. Off by default: the file must be on a volume.",
    )

    output_format: str = _setting(
        env='FORMAT', default='json', parse=_choice('json', 'text', 'cloudevents'),
        accepts='json, text or cloudevents',
        doc="json: one JSON object per line (schema deploywatch/v1), for pipelines. text: one "
            "short aligned line per event (time, type, namespace/name, ready/desired, rollout, "
            "manager, images, changed paths), coloured when stdout is a terminal and NO_COLOR is "
            "unset. cloudevents: each event as one CloudEvents 1.0 JSON object (structured mode; "
            "id, source, type dev.deploywatch.deployment.<type>, subject namespace/name), the "
            "v1 event as its data, for Knative, Argo Events and other CloudEvents routers.",
    )
    cluster: str | None = _setting(
        env='CLUSTER', default=None, parse=_cluster,
        accepts='a cluster name: letters, digits, ".", "_" and "-", at most 253 (empty: none)',
        doc="Put this name on every line (cluster), in the text format and in CloudEvents' "
            "source, for fleets that ship many clusters' streams to one store. Unset by "
            "default: a single cluster's stream needs no name.",
    )
    label_selector: str = _setting(
        env='LABEL_SELECTOR', default='', parse=_label_selector,
        accepts='a Kubernetes label selector, e.g. "app=web,tier in (front,back),!canary"',
        doc="Only Deployments matching it, filtered by the API server. A Deployment whose labels "
            "stop matching is reported as DELETED (and as ADDED when it matches again), as "
            "kubectl get -w -l does. Checked with the API server's own grammar before connecting "
            "(keys, values, in/notin sets, =, ==, !=, and > or < an integer).",
    )
    printed_types: frozenset[str] = _setting(
        env='TYPES', default=EVENT_TYPES, parse=_types,
        accepts='a comma-separated subset of ADDED,MODIFIED,DELETED,RESYNC',
        doc="Print only these event types, e.g. ADDED,DELETED for an inventory without update "
            "noise. The others are still tracked: a MODIFIED's old is the previous state seen.",
    )
    ignore_status: bool = _setting(
        env='IGNORE_STATUS', default=False, parse=_boolean,
        accepts='true or false',
        doc="Drop MODIFIED events that change nothing but status and the revision annotation: "
            "the deployment controller reporting a rollout's progress.",
    )
    include_old: bool = _setting(
        env='OLD', default=True, parse=_boolean,
        accepts='true or false',
        doc="Include old (the previous state) in MODIFIED; the diff stays. false roughly halves "
            "MODIFIED lines.",
    )
    object_detail: str = _setting(
        env='OBJECT', default='full', parse=_choice('full', 'summary'),
        accepts='full or summary',
        doc="full: the whole Deployment in object (and old). summary: no object and no old, only "
            "identity, summary and diff: the smallest lines.",
    )

    metrics_port: int | None = _setting(
        env='METRICS_PORT', default=None, parse=_port,
        accepts='a TCP port, 1 to 65535 (empty: no metrics server)',
        doc="Serve Prometheus metrics at /metrics on this port, on every interface (see "
            "docs/operating.md). Off by default; the manifests set 8081.",
    )
    stall_seconds: float = _setting(
        env='STALL_SECONDS', default=180.0, parse=_stall_seconds,
        accepts=f'a finite number of seconds: 0 (no stall check) or at least {MIN_STALL_SECONDS:g}',
        doc="Kopf's liveness endpoint (--liveness) fails once a Deployment watch has heard nothing "
            "from the API server (no event, BOOKMARK, listing, or answer to a watch request) for "
            "this long. A quiet, healthy watch hears an answer about every 70 s (Kopf reopens a "
            "silent stream), so three minutes is two missed rounds and the retry back-off; a watch "
            "paused on purpose (stdout behind, another replica leading) is not stalled. It fails "
            "too when no Deployment watch has run for this long and nothing will start one (a "
            "--namespace glob matching no namespace yet is healthy while Kopf watches namespaces).",
    )

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> 'Settings':
        """Parse every known ``DEPLOYWATCH_*`` variable; raise on the first bad one."""
        values: dict[str, Any] = {}
        for field in dataclasses.fields(cls):
            name = field.metadata['env']
            if name not in environ:
                continue
            try:
                values[field.name] = field.metadata['parse'](environ[name])
            except (ValueError, OverflowError) as error:
                # A selector's error says which part is wrong (always one printable line).
                reason = f' ({error})' if isinstance(error, SelectorError) else ''
                raise SettingsError(
                    f"{name}={environ[name]!r} is invalid{reason}: expected {field.metadata['accepts']}."
                ) from None
        return cls(**values)

    @classmethod
    def unknown_variables(cls, environ: Mapping[str, str]) -> list[str]:
        """Names with our prefix that no setting reads: most likely typos."""
        known = {field.metadata['env'] for field in dataclasses.fields(cls)}
        return sorted(name for name in environ if name.startswith(PREFIX) and name not in known)

