"""A dependency's background loop of rounds, woken early by a commit: notify's dispatcher and the
portal's sender. A round that took a full lease goes again at once (more may wait); otherwise the
loop waits ``poll`` seconds, or less when ``wake()`` is called (a commit that queued work). A round
that fails (the database away) is logged and tried again at the next poll."""
from __future__ import annotations

from typing import Callable

import structlog
from eventlet.event import Event


class Rounds:
    def __init__(self, name: str, round_: Callable[[], int], *, poll: float, full: int,
                 after_round: Callable[[], None] | None = None):
        self.name, self.round, self.poll, self.full, self.after_round = name, round_, poll, full, after_round
        self.log = structlog.get_logger(f"motcua.{name}")
        self.running = False
        self.wakeup = Event()

    def start(self, container) -> None:
        self.running = True
        container.spawn_managed_thread(self._run, identifier=self.name)

    def stop(self) -> None:
        self.running = False
        self.wake()

    def wake(self) -> None:
        if self.running and not self.wakeup.ready():
            self.wakeup.send(True)

    def _run(self) -> None:
        while self.running:
            self.wakeup = Event()
            try:
                done = self.round()
            except Exception:   # the database or the broker away: try again at the next poll
                self.log.warning("round failed", loop=self.name, exc_info=True)
                done = 0
            if self.after_round is not None:
                self.after_round()
            if done < self.full:
                self.wakeup.wait(timeout=self.poll)
