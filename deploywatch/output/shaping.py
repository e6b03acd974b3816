"""
What of each event is written: which types, which changes, how much of the object.

The tracker always builds the complete event and keeps its memory complete, so filters
never change what the stream *knows* (a MODIFIED after a dropped one still diffs
against the state before it); shaping only decides what reaches stdout.
"""
import dataclasses
from typing import Any

from deploywatch.base.settings import Settings
from deploywatch.model.events import Event


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


REVISION = 'deployment.kubernetes.io/revision'


def is_status_only(event: Event) -> bool:
    """
    A MODIFIED that only reports the deployment controller's progress (an empty diff too).

    That is ``status``, plus the revision annotation: the controller writes it
    through the status subresource along with the status it belongs to.
    """
    return all(_is_controller_bookkeeping(operation) for operation in event['diff'])


def _is_controller_bookkeeping(operation: dict[str, Any]) -> bool:
    path = operation['path']
    if path.startswith('/status') or path == '/metadata/annotations/deployment.kubernetes.io~1revision':
        return True
    value = operation.get('value')
    return path == '/metadata/annotations' and isinstance(value, dict) and set(value) == {REVISION}
