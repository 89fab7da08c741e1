"""Scheduled training: the data-driven models retrained at an interval."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING

from closedloop.errors import FailedPrecondition, Unavailable

if TYPE_CHECKING:
    from collections.abc import Callable

    from services.attribution.application import Attributions
    from services.attribution.domain import TrainedModel

log = logging.getLogger(__name__)


class TrainingSchedule:
    """Retrains the data-driven models every `interval` seconds until closed."""

    def __init__(
        self,
        attributions: Attributions,
        interval: float,
        *,
        on_trained: Callable[[list[TrainedModel]], None] | None = None,
    ) -> None:
        self.attributions = attributions
        self.interval = interval
        self.on_trained = on_trained
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self.interval > 0 and self._task is None:
            self._task = asyncio.create_task(self._run(), name="attribution-training")

    async def _run(self) -> None:
        while not self._stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self.interval)
            if self._stopping.is_set():
                return
            try:
                results = await self.attributions.train()
            except FailedPrecondition as error:
                log.info("scheduled training skipped: %s", error.message)
            except Unavailable:
                return  # the service is stopping
            except Exception:
                log.exception("scheduled training failed; trying again next time")
            else:
                log.info(
                    "trained %s on %d journeys",
                    ", ".join(r.model for r in results),
                    results[0].journeys if results else 0,
                )
                if self.on_trained is not None:
                    self.on_trained(results)

    async def close(self, grace: float = 30.0) -> None:
        """Stops the schedule; a training under way may finish within `grace`."""
        self._stopping.set()
        self.attributions.close()
        if self._task is None:
            return
        task, self._task = self._task, None
        try:
            await asyncio.wait_for(task, grace)
        except TimeoutError:
            log.warning("a training did not finish in %ss; abandoned", grace)
        except asyncio.CancelledError:
            pass
