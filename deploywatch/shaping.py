"""
What of each event is written: which types, which changes, how much of the object.

The tracker always builds the complete event and keeps its memory complete, so
that filters never change what the stream *knows*: a MODIFIED printed after a
dropped status-only one still diffs against the state before it, and RESYNC
still re-announces the current state. Shaping only decides what reaches stdout.
"""
import dataclasses

from deploywatch.events import Event
from deploywatch.settings import Settings


@dataclasses.dataclass(frozen=True)
class Shaper:
    printed_types: frozenset[str]
    ignore_status: bool = False
    include_old: bool = True
    object_detail: str = 'full'

    @classmethod
    def from_settings(cls, settings: Settings) -> 'Shaper':
        return cls(printed_types=settings.printed_types, ignore_status=settings.ignore_status,
                   include_old=settings.include_old, object_detail=settings.object_detail)

    def __call__(self, event: Event) -> Event | None:
        """The event as it is to be written, or None if it is not to be written at all."""
        if event['type'] not in self.printed_types:
            return None
        if self.ignore_status and event['type'] == 'MODIFIED' and is_status_only(event):
            return None
        if self.object_detail == 'summary':
            return {key: value for key, value in event.items() if key not in ('object', 'old')}
        if not self.include_old:
            return {key: value for key, value in event.items() if key != 'old'}
        return event


def is_status_only(event: Event) -> bool:
    """A MODIFIED whose diff touches nothing outside ``status`` (an empty diff included)."""
    return all(operation['path'].startswith('/status') for operation in event['diff'])
