"""
Streaming lists (KEP-3157, ``sendInitialEvents``): which requests a version serves, refuses, and gzips.

What each rule is, and which file of the apiserver's source says so (``k8s.io/apimachinery``
and ``k8s.io/apiserver`` v0.34.4 and v0.37.2, the modules ``tests/cluster/build.sh`` builds the
recorded servers from); every rule is held to ``tests/emulator/recordings/v1.3*/watchlist-*.json``
by ``tests/emulator/test_recorded_watchlist.py``:

- **parsing** a query bool (``runtime/conversion.go`` ``Convert_Slice_string_To_Pointer_bool``):
  only ``0`` and ``false`` (any case) are false; anything else, ``yes`` and the empty string
  included, is true (``watchlist-refused.json``: ``sendInitialEvents=yes`` is served);
- **defaulting** (``apis/meta/internalversion/defaults.go`` ``SetListOptionsDefaults``): with
  the ``WatchList`` gate on, a watch from no or ``"0"`` resourceVersion that names neither
  ``sendInitialEvents`` nor ``resourceVersionMatch`` gets ``sendInitialEvents=true``,
  ``resourceVersionMatch=NotOlderThan``;
- **validation** (``apis/meta/internalversion/validation/validation.go``
  ``ValidateListOptions``): a 422 ``Invalid`` of kind ``ListOptions`` (group ``meta.k8s.io``),
  one cause per broken rule, in its order: for a watch, ``sendInitialEvents`` wants
  ``resourceVersionMatch=NotOlderThan`` and the gate; ``resourceVersionMatch`` wants
  ``sendInitialEvents``, only ``NotOlderThan``, and no ``continue``; a LIST may not have
  ``sendInitialEvents``;
- a **streaming list** is ``sendInitialEvents=true`` *and* ``allowWatchBookmarks``
  (``endpoints/handlers/get.go`` / ``storage/cacher/cacher.go`` ``isListWatchRequest``): only
  it gets the BOOKMARK annotated ``k8s.io/initial-events-end`` and gzip;
- **gzip** (``endpoints/handlers/watch.go``, gate ``WatchListCompression``, v1.37 only,
  ``responsewriters/compression.go`` ``ContentEncodingSupported``): a streaming list whose
  ``Accept-Encoding`` has a ``gzip`` token (``gzip;q=0`` is not one) is written through a
  ``perFlushGzipWriter``: ``Content-Encoding: gzip``, ``Vary: Accept-Encoding``, and one
  complete gzip member per flush, whatever its size (the 128 KiB threshold of
  ``responsewriters/writers.go`` is for other responses).

Versions (``versions.KubeVersion.watch_list``): v1.24 knows no ``sendInitialEvents`` (the
decoder drops it) and refuses any ``resourceVersionMatch`` on a watch ("resourceVersionMatch
is forbidden for watch", its ``validateWatchOptions``); v1.28 has the gate, alpha and off, so it
refuses as a v1.34+ server started with ``WatchList=false`` does (``v1.37/watchlist-gate-off.json``).
Neither is recorded here: the words are the source's.
"""
import dataclasses
import gzip
from collections.abc import Mapping

from deploywatch.testing.errors import ApiError

INITIAL_EVENTS_END = 'k8s.io/initial-events-end'
NOT_OLDER_THAN = 'NotOlderThan'


def go_bool(value: str) -> bool:
    """A query bool as the apiserver decodes it: only ``0`` and ``false`` (any case) are false."""
    return not (value == '0' or value.lower() == 'false')


@dataclasses.dataclass(frozen=True)
class ListOptions:
    """What of a WATCH's or LIST's query concerns streaming lists, after defaulting."""
    send_initial_events: bool | None
    """``None``: not asked for (and not defaulted)."""
    explicit: bool
    """``sendInitialEvents`` was in the query (not defaulted from an empty resourceVersion)."""
    bookmarks: bool

    @property
    def is_watch_list(self) -> bool:
        """``isListWatchRequest``: the initial-events-end BOOKMARK, gzip, the early first bookmark."""
        return bool(self.send_initial_events) and self.bookmarks


def _cause(reason: str, field: str, message: str) -> dict[str, str]:
    return {'reason': reason, 'message': message, 'field': field}


def _forbidden(field: str, detail: str) -> dict[str, str]:
    return _cause('FieldValueForbidden', field, f'Forbidden: {detail}')


def invalid(causes: list[dict[str, str]]) -> ApiError:
    """``errors.NewInvalid`` of ``ListOptions``: its message lists ``field: message`` of every cause."""
    what = [f'{cause["field"]}: {cause["message"]}' for cause in causes]
    listed = what[0] if len(what) == 1 else f'[{", ".join(what)}]'
    return ApiError(422, 'Invalid', f'ListOptions.meta.k8s.io "" is invalid: {listed}',
                    {'group': 'meta.k8s.io', 'kind': 'ListOptions', 'causes': causes})


def parse(query: Mapping[str, str], *, watch: bool, knows_send_initial_events: bool,
          gate: bool) -> ListOptions:
    """
    The streaming-list options of a request, defaulted and validated as ``listOpts`` in
    ``endpoints/handlers/get.go`` does; a 422 (``invalid``) where validation refuses them.

    ``knows_send_initial_events``: v1.27+ (v1.24's ``ListOptions`` has no such field);
    ``gate``: the ``WatchList`` feature gate. A LIST is only checked when it names
    ``sendInitialEvents`` (the rest of a LIST's rules are the store's, as before).
    """
    bookmarks = watch and go_bool(query['allowWatchBookmarks']) if 'allowWatchBookmarks' in query else False
    match = query.get('resourceVersionMatch', '')
    if not knows_send_initial_events:
        if watch and match:
            raise invalid([_forbidden('resourceVersionMatch', 'resourceVersionMatch is forbidden for watch')])
        return ListOptions(None, False, bookmarks)
    explicit = 'sendInitialEvents' in query
    send = go_bool(query['sendInitialEvents']) if explicit else None
    version = query.get('resourceVersion', '')
    if gate and watch and send is None and not match and version in ('', '0'):
        return ListOptions(True, False, bookmarks)  # SetListOptionsDefaults
    causes: list[dict[str, str]] = []
    if not watch:
        if send is None:
            return ListOptions(None, False, False)
        if match:
            if not version:
                causes.append(_forbidden('resourceVersionMatch', 'resourceVersionMatch is forbidden unless '
                                         'resourceVersion is provided'))
            if query.get('continue'):
                causes.append(_forbidden('resourceVersionMatch',
                                         'resourceVersionMatch is forbidden when continue is provided'))
            if match not in ('Exact', NOT_OLDER_THAN):
                causes.append(_cause('FieldValueNotSupported', 'resourceVersionMatch',
                                     f'Unsupported value: "{match}": supported values: "Exact", '
                                     f'"{NOT_OLDER_THAN}", ""'))
            if match == 'Exact' and version == '0':
                causes.append(_forbidden('resourceVersionMatch',
                                         'resourceVersionMatch "exact" is forbidden for resourceVersion "0"'))
        causes.append(_forbidden('sendInitialEvents', 'sendInitialEvents is forbidden for list'))
        raise invalid(causes)
    if send is not None:
        if match != NOT_OLDER_THAN:
            causes.append(_forbidden('resourceVersionMatch', 'sendInitialEvents requires setting '
                                     f'resourceVersionMatch to {NOT_OLDER_THAN}'))
        if not gate:
            causes.append(_forbidden('sendInitialEvents', 'sendInitialEvents is forbidden for watch unless '
                                     'the WatchList feature gate is enabled'))
    if match:
        if send is None:
            causes.append(_forbidden('resourceVersionMatch', 'resourceVersionMatch is forbidden for watch '
                                     'unless sendInitialEvents is provided'))
        if match != NOT_OLDER_THAN:
            causes.append(_cause('FieldValueNotSupported', 'resourceVersionMatch',
                                 f'Unsupported value: "{match}": supported values: "{NOT_OLDER_THAN}"'))
        if query.get('continue'):
            causes.append(_forbidden('resourceVersionMatch',
                                     'resourceVersionMatch is forbidden when continue is provided'))
    if causes:
        raise invalid(causes)
    return ListOptions(send, explicit, bookmarks)


def accepts_gzip(accept_encoding: str) -> bool:
    """``ContentEncodingSupported``: a comma-separated token that is exactly ``gzip`` once trimmed."""
    return any(token.strip() == 'gzip' for token in accept_encoding.split(','))


def gzip_member(lines: list[bytes]) -> bytes:
    """What a ``perFlushGzipWriter`` writes at a flush: the lines since the last one, one whole member."""
    return gzip.compress(b''.join(lines))
