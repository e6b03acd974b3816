"""
Loaded by ``kopf run`` after operator/handlers.py (test_exit_status.py): the RESYNC task
dies after its first line, as a bug in it would make it. No input makes the real one raise
(it reads only what the tracker already printed), so the death is played from outside
deploywatch: the composition root's reference to the task is replaced before the start-up
handler starts it.
"""
from typing import Any

from deploywatch.runtime import app
from deploywatch.runtime.resync import resync_forever


class _ThenDie:
    def __init__(self, writer: Any) -> None:
        self._writer = writer

    def write(self, event: dict[str, Any]) -> None:
        self._writer.write(event)
        raise RuntimeError('RESYNC died on purpose (tests/robustness/dying_resync.py)')


async def _dying(**kwargs: Any) -> None:
    await resync_forever(**{**kwargs, 'writer': _ThenDie(kwargs['writer'])})


app.resync_forever = _dying  # type: ignore[attr-defined]
