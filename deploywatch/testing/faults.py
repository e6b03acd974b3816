"""
Failures the emulated API server can be told to produce, for the robustness tests.

A test arms a fault; the next matching request meets it, and each fault is used
up as it fires (``times``), so a scenario reads as a script: "the next watch
is cut after 3 events, then the server answers 500 twice". The failures are
the ones a watcher meets in real clusters:

* a watch stream closed by the server after N events, cleanly (as at a
  timeout), or mid-line (half a JSON line, then the connection is dropped), or
  by a TCP reset;
* a watch stream that ends *cleanly* after half a line, the last line without
  its newline (a proxy or load balancer that closes the chunked response as if
  it were complete), possibly in the middle of a multi-byte UTF-8 character;
* a watch answered with 200 and an empty body, closed at once (a server or
  proxy shutting down, again and again: ``empty_watch``);
* a watch that answers ``410 Gone`` (the ERROR event a real server sends for a
  resourceVersion older than its watch cache);
* error answers (500, 503, 429 with Retry-After, 403) to LIST or WATCH;
* an outage: the port refuses connections for a while (``ServerThread.outage``);
* a stall: watch streams stay open and send nothing, not even a BOOKMARK, and new
  watches get no answer (``stall_watches``), until ``resume_watches`` — what a
  watcher sees of a frozen API server, or of a proxy that stopped forwarding.
"""
import dataclasses
import enum


class Cut(enum.Enum):
    CLEAN = 'clean'  # the stream ends, as at timeoutSeconds
    MID_LINE = 'mid-line'  # half of the next line is sent, then the connection drops
    RESET = 'reset'  # the TCP connection is aborted
    HALF_LINE = 'half-line'  # half of the next line, then a clean end of the response
    MID_CHAR = 'mid-char'  # up to the middle of the next line's first multi-byte character, then a clean end


@dataclasses.dataclass
class WatchCut:
    after: int  # events delivered before the cut
    how: Cut
    times: int = 1


@dataclasses.dataclass
class ErrorAnswer:
    status: int
    verbs: frozenset[str]
    times: int = 1


@dataclasses.dataclass
class Faults:
    cuts: list[WatchCut] = dataclasses.field(default_factory=list)
    errors: list[ErrorAnswer] = dataclasses.field(default_factory=list)
    expirations: int = 0  # how many next watches answer 410 Gone
    empties: int = 0  # how many next watches answer 200 with no event and close at once
    stalled: bool = False  # watches send nothing (held, not lost) until resume_watches()
    odd_lines: list[bytes] = dataclasses.field(default_factory=list)  # each next watch sends one first
    fired: list[str] = dataclasses.field(default_factory=list)  # what happened, for the test's report

    def cut_watch(self, *, after: int, how: Cut = Cut.CLEAN, times: int = 1) -> None:
        self.cuts.append(WatchCut(after, how, times))

    def expire_watch(self, times: int = 1) -> None:
        self.expirations += times

    def empty_watch(self, times: int = 1) -> None:
        self.empties += times

    def send_odd_lines(self, *lines: bytes) -> None:
        """The next watches each send one of ``lines`` first, as a broken server or proxy might."""
        self.odd_lines.extend(lines)

    def take_odd_line(self) -> bytes | None:
        if not self.odd_lines:
            return None
        self.fired.append('watch:odd-line')
        return self.odd_lines.pop(0)

    def stall_watches(self) -> None:
        self.stalled = True
        self.fired.append('watch:stall')

    def resume_watches(self) -> None:
        self.stalled = False

    def answer(self, status: int, *, times: int = 1,
               verbs: frozenset[str] = frozenset({'list', 'watch'})) -> None:
        self.errors.append(ErrorAnswer(status, verbs, times))

    def clear(self) -> None:
        self.cuts.clear()
        self.errors.clear()
        self.expirations = 0
        self.empties = 0
        self.stalled = False
        self.odd_lines.clear()

    def take_error(self, verb: str) -> int | None:
        """The status to answer this request with, if an error is armed for its verb."""
        for armed in self.errors:
            if verb in armed.verbs:
                self._use(self.errors, armed)
                self.fired.append(f'{verb}:{armed.status}')
                return armed.status
        return None

    def take_expiration(self) -> bool:
        if self.expirations:
            self.expirations -= 1
            self.fired.append('watch:410')
            return True
        return False

    def take_empty(self) -> bool:
        if self.empties:
            self.empties -= 1
            self.fired.append('watch:empty')
            return True
        return False

    def take_cut(self) -> WatchCut | None:
        if not self.cuts:
            return None
        cut = self.cuts[0]
        self._use(self.cuts, cut)
        self.fired.append(f'watch:cut-{cut.how.value}-after-{cut.after}')
        return cut

    @staticmethod
    def _use(armed: list[WatchCut] | list[ErrorAnswer], fault: WatchCut | ErrorAnswer) -> None:
        fault.times -= 1
        if fault.times <= 0:
            armed.remove(fault)  # type: ignore[arg-type]
