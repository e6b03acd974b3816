"""
JSON in and out, and the bytes the tracker keeps of every live Deployment.

At 100,000 Deployments the size of one kept ``bytes`` is the operator's memory, so:

* :func:`encode` copies orjson's result into a ``bytes`` of its exact length: orjson
  (3.12 and later) returns its working buffer, at least 4 KiB, as the result;
* a :class:`Packer` trains a zstd dictionary once its tracker holds :data:`TRAIN_AFTER`
  objects (the Deployments of one cluster are alike) and compresses every object
  against it from then on; a smaller cluster is never compressed. A dictionary is kept
  for the process's life: objects unlike it compress less, never wrongly;
* what orjson refuses or would read back wrongly (lone surrogates, integers beyond
  64 bits: only hostile objects carry them) is written by the standard library and
  marked :data:`STDLIB`.

Kept bytes have three forms, told by the first byte: JSON (``{``), :data:`STDLIB` +
JSON, :data:`PACKED` + the dictionary's number (4 bytes) + a zstd frame of one of the
other two. :func:`plain` and :func:`decode` read any of them in any thread (the state
file is written with :func:`plain` from the saver's thread, as plain JSON lines), so
dictionaries are registered process-wide (append-only) and each thread has its own
zstd contexts: one context must not be used by two threads at once.

The operator packs on a thread of its own (:class:`Packer`, ``background``): kept bytes
live in a :class:`Held` record, plain at first, and the thread swaps them for their
packed form, the same content, a few milliseconds later. zstd compresses a batch there
without the GIL, on the other core, while the event loop goes on; on the loop, between
other work, with its caches cold, compressing cost a tenth of a listing's time.

:class:`Kept` lets an event's ``object``/``old`` carry the JSON the tracker already
holds, so that the line need not encode it again. Costs: ``docs/scale.md``, "Where the
time goes, module by module".
"""
import collections
import json
import struct
import threading
import time
from collections.abc import Hashable, Iterable
from typing import Any, Protocol

import orjson
import zstandard

STDLIB = b'\x00'  # marks bytes that only the standard library can read back exactly
PACKED = b'\x01'  # marks a zstd frame: PACKED + dictionary number (>I) + frame
TRAIN_AFTER = 1000  # objects held before a dictionary is trained on them
DICTIONARY_SIZE = 16 * 1024  # bytes; twice as much gained little and took longer to train
REST_SECONDS = 1.0  # a changed object's new state stays plain this long before the packing thread packs it
# zstd's fast strategy with small tables (16 KB of hash table, a 32 KB window: the dictionary and
# a typical object): an object is compressed between other work, with the CPU caches cold, where
# level 3's tables of hundreds of KB cost several times as long for ~10 % fewer bytes.
PARAMETERS = zstandard.ZstdCompressionParameters(
    window_log=15, hash_log=12, chain_log=12, search_log=1, min_match=5, strategy=zstandard.STRATEGY_FAST,
    write_checksum=0, write_content_size=1, write_dict_id=0)
LEVEL = 3  # what the trainer optimises the dictionary's entropy tables for (zstd's default level)
_NUMBER = struct.Struct('>I')
_HEADER = len(PACKED) + _NUMBER.size

_DICTIONARIES: list[zstandard.ZstdCompressionDict] = []
_registering = threading.Lock()
_contexts = threading.local()  # per thread: {number: ZstdCompressor}, {number: ZstdDecompressor}


DIGITS = bytes(ord('0') if ord('0') <= byte <= ord('9') else ord('.') for byte in range(256))
LONG_NUMBER = b'0' * 19  # with DIGITS: a run of 19 digits or more


def loads(data: bytes | bytearray) -> Any:
    """
    One JSON document (UTF-8 bytes), by orjson; by the standard library where orjson
    would refuse it or decode it differently.

    orjson reads an integer beyond 64 bits as a float without a word, and such a number
    has 19 digits or more: a document with a run of 19 digits anywhere (in a string too)
    goes to ``json.loads``. The look is ``bytes.translate`` and a search, both in C.
    """
    if LONG_NUMBER not in data.translate(DIGITS):
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError:
            pass
    return json.loads(data.decode('utf-8'))


def tight(data: bytes) -> bytes:
    """``data`` in an allocation of its own length (orjson's result is over-allocated)."""
    return bytes(memoryview(data))


def encode(obj: Any) -> bytes:
    """JSON bytes of an object to keep: orjson's, right-sized; the standard library's where orjson refuses."""
    try:
        return tight(orjson.dumps(obj))
    except TypeError:  # orjson.JSONEncodeError is one
        return STDLIB + json.dumps(obj, separators=(',', ':')).encode()


def plain(data: bytes) -> bytes:
    """The JSON bytes (possibly :data:`STDLIB`-marked) of kept bytes of any form."""
    if data[:1] != PACKED:
        return data
    (number,) = _NUMBER.unpack_from(data, 1)
    return _decompressor(number).decompress(memoryview(data)[_HEADER:])


def decode(data: bytes) -> Any:
    data = plain(data)
    return json.loads(data[1:]) if data[:1] == STDLIB else orjson.loads(data)


class Held(Protocol):
    """
    Kept bytes in a record of their own: :class:`Packer` may replace ``encoded`` from its
    thread, by the packed form of the same bytes, and by nothing else. Anyone holding the
    record (the tracker, the state file's ledger) then holds the packed form too.
    """
    encoded: bytes


class Packer:
    """
    One tracker's compression: nothing until :meth:`train`, then a zstd dictionary.

    Used from one thread (the tracker's); what it packs is readable anywhere (:func:`plain`).
    With ``background``, :meth:`train` trains in a thread of its own (zstd's trainer holds
    no GIL), so the event loop goes on printing the listing; objects stay plain until the
    dictionary is there. And :meth:`keep` packs on that thread too, in batches: zstd's
    ``multi_compress_to_buffer`` compresses a whole batch without the GIL, where each
    ``compress`` holds it (so one thread packing object by object would only take turns
    with the loop).

    The new state of an object that changed (``keep(changed=key)``) rests plain until the
    object has not changed for ``rest`` seconds: an object changing many times a second (a
    rollout, a burst of status updates) is read back for its next change without a
    decompression, which lets the GIL go to the other threads each time, and only its last
    state is packed. What rests is one state per object that changed in the last ``rest``
    seconds; a state replaced meanwhile is let go unpacked. Under ``make bench``'s burst,
    ~14 % more lines a second (docs/scale.md).
    """

    def __init__(self, *, train_after: int = TRAIN_AFTER, background: bool = False,
                 rest: float = REST_SECONDS) -> None:
        self.train_after = train_after
        self.background = background
        self.rest = rest
        self.number: int | None = None  # the dictionary's, once trained
        self._training = False
        self._trained: zstandard.ZstdCompressionDict | None = None  # set by the training thread
        self._fresh = False  # usable since the last fresh()
        self._waiting: collections.deque[Held] = collections.deque()  # for the packing thread
        self._resting: dict[Hashable, tuple[float, Held]] = {}  # key: (due, record), in the order due
        self._rest_lock = threading.Lock()  # the loop replaces what rests while the thread takes it
        self._wanted = threading.Event()  # set when records wait
        self._packing: threading.Thread | None = None
        self._idle = threading.Condition()  # the packing thread has packed all it was given
        self._given = self._done = 0

    def wants(self, held: int) -> bool:
        """Whether a tracker holding ``held`` objects should :meth:`train` now."""
        return self.number is None and not self._training and held >= self.train_after

    def train(self, samples: Iterable[bytes], *, now: bool = False) -> None:
        """Train the dictionary on ``samples`` (kept bytes of any form): in the background, unless ``now``."""
        data: list[bytes | bytearray | memoryview[int]] = [plain(sample) for sample in samples]
        self._training = True
        if now or not self.background:
            self._register(_dictionary(data))
            return

        def work() -> None:
            self._trained = _dictionary(data)

        threading.Thread(target=work, name='deploywatch dictionary', daemon=True).start()

    def fresh(self) -> bool:
        """
        Whether the dictionary became usable since the last call: the caller then packs
        again what it holds. One trained in the background is registered here, on the
        caller's thread, so that :meth:`pack` only ever sees one number.
        """
        if self._trained is not None and self.number is None:
            self._register(self._trained)
        fresh, self._fresh = self._fresh, False
        return fresh

    def _register(self, dictionary: zstandard.ZstdCompressionDict) -> None:
        with _registering:
            _DICTIONARIES.append(dictionary)
            self.number = len(_DICTIONARIES) - 1
        self._fresh = True

    def pack(self, data: bytes) -> bytes:
        """``data`` (plain) as it is to be kept: compressed once a dictionary is trained."""
        if self.number is None:
            return data
        return PACKED + _NUMBER.pack(self.number) + _compressor(self.number).compress(data)

    def keep(self, held: Held, *, now: bool = False, changed: Hashable | None = None) -> None:
        """
        Pack ``held.encoded`` (plain) once a dictionary is trained: at once, or with
        ``background`` (and not ``now``) on the packing thread, soon; ``changed`` (the key of
        an object held before: this is its new state), once the object has rested (``rest``).
        """
        if self.number is None:
            return
        if now or not self.background:
            held.encoded = self.pack(held.encoded)
            return
        if changed is not None:
            with self._rest_lock:
                replaced = self._resting.pop(changed, None) is not None  # let go unpacked
                self._resting[changed] = (time.monotonic() + self.rest, held)  # last: due last
                first = len(self._resting) == 1  # else the thread waits for one due before it
            if not replaced:
                self._given += 1
            if first:
                self._wanted.set()
        else:
            self._given += 1
            self._waiting.append(held)
            if not self._wanted.is_set():
                self._wanted.set()
        if self._packing is None:
            self._packing = threading.Thread(target=self._pack_waiting, args=(self.number,),
                                             name='deploywatch packing', daemon=True)
            self._packing.start()

    def idle(self, timeout: float) -> bool:
        """Wait until the packing thread has packed all it was given; whether it has (tests)."""
        with self._idle:
            return self._idle.wait_for(lambda: self._done >= self._given, timeout)

    def _pack_waiting(self, number: int) -> None:
        header = PACKED + _NUMBER.pack(number)
        compressor = _compressor(number)
        due: float | None = None  # how long until the first resting record is due
        while True:
            self._wanted.wait(due)
            self._wanted.clear()  # before taking: what comes after is waited for again
            batch = [self._waiting.popleft() for _ in range(len(self._waiting))]
            rested, due = self._rested()
            batch += rested
            if not batch:
                continue
            data: list[bytes | bytearray | memoryview[int]] = [held.encoded for held in batch]
            frames = compressor.multi_compress_to_buffer(data, threads=1)  # without the GIL
            for index, held in enumerate(batch):
                held.encoded = header + frames[index].tobytes()
            count = len(batch)
            del batch, data, frames, held  # the plain bytes are not kept alive while it waits
            with self._idle:
                self._done += count
                self._idle.notify_all()

    def _rested(self) -> tuple[list[Held], float | None]:
        """
        The records that have rested, or will within a tenth of ``rest`` (~10 wake-ups a
        second at most), taken; and the seconds until the next one is due (None: none rests).
        """
        now = time.monotonic()
        taken: list[tuple[Hashable, Held]] = []
        with self._rest_lock:
            for key, (due, held) in self._resting.items():
                if due > now + self.rest / 10:
                    break
                taken.append((key, held))
            for key, _ in taken:
                del self._resting[key]
            first = next(iter(self._resting.values()), None)
        return [held for _, held in taken], None if first is None else first[0] - now


def _dictionary(data: 'list[bytes | bytearray | memoryview[int]]') -> zstandard.ZstdCompressionDict:
    """
    A dictionary trained on ``data``: zstd's trainer refuses samples too few or too alike
    to learn from; their concatenation then serves as the dictionary ("raw content"),
    which still finds every repeated string.
    """
    try:
        dictionary = zstandard.train_dictionary(DICTIONARY_SIZE, data, level=LEVEL)
    except zstandard.ZstdError:
        dictionary = zstandard.ZstdCompressionDict(b''.join(data)[-DICTIONARY_SIZE:],
                                                   dict_type=zstandard.DICT_TYPE_RAWCONTENT)
    dictionary.precompute_compress(compression_params=PARAMETERS)
    return dictionary


def _compressor(number: int) -> zstandard.ZstdCompressor:
    cache: dict[int, zstandard.ZstdCompressor] = _thread_cache('compressors')
    found = cache.get(number)
    if found is None:
        found = cache[number] = zstandard.ZstdCompressor(dict_data=_DICTIONARIES[number],
                                                         compression_params=PARAMETERS)
    return found


def _decompressor(number: int) -> zstandard.ZstdDecompressor:
    cache: dict[int, zstandard.ZstdDecompressor] = _thread_cache('decompressors')
    found = cache.get(number)
    if found is None:
        found = cache[number] = zstandard.ZstdDecompressor(dict_data=_DICTIONARIES[number])
    return found


def _thread_cache(name: str) -> Any:
    cache = getattr(_contexts, name, None)
    if cache is None:
        cache = {}
        setattr(_contexts, name, cache)
    return cache


class Kept(dict[str, Any]):
    """
    An object of an event (``object``, ``old``) that carries its own JSON, orjson's bytes.

    The tracker has those bytes anyway (it encoded the new state to keep it, and
    decompressed the previous one), and encoding the object again was most of the cost of
    a line. It is a ``dict`` for everyone else; an encoder that passes :data:`SPLICE` and
    :func:`splice` to ``orjson.dumps`` writes its bytes instead, the same bytes. Nothing
    changes an object once it is parsed (``objects.clean``), so they cannot go stale.
    """
    __slots__ = ('json',)

    def __init__(self, obj: dict[str, Any], data: bytes) -> None:
        super().__init__(obj)
        self.json = data


SPLICE = orjson.OPT_PASSTHROUGH_SUBCLASS  # with splice(): Kept objects as their own bytes


def splice(value: Any) -> Any:
    """
    ``orjson.dumps``'s ``default`` with :data:`SPLICE`: a :class:`Kept` as its bytes, any
    other subclass of a builtin as that builtin (how orjson writes them without the option).
    """
    if isinstance(value, Kept):
        return orjson.Fragment(value.json)
    if isinstance(value, dict):
        return dict(value)
    if isinstance(value, list):
        return list(value)
    if isinstance(value, str):
        return str(value)
    if isinstance(value, int):
        return int(value)
    raise TypeError(f'{type(value).__name__} is not JSON serialisable')


def kept(obj: Any, data: bytes) -> Any:
    """``obj`` as a :class:`Kept` of its JSON ``data`` (plain bytes), where orjson wrote them."""
    if isinstance(obj, dict) and data[:1] == b'{':
        return Kept(obj, data)
    return obj
