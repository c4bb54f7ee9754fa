"""Progress reporting that stage code calls without knowing who shows it (CLI bar or log)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from contextlib import contextmanager

log = logging.getLogger("convoforge.progress")

# (stage, done, total) -> None. The CLI installs a rich progress bar; otherwise we log.
Listener = Callable[[str, int, int], None]
_listeners: list[Listener] = []


def add_listener(fn: Listener) -> None:
    _listeners.append(fn)


def remove_listener(fn: Listener) -> None:
    if fn in _listeners:
        _listeners.remove(fn)


class Tracker:
    def __init__(self, stage: str, total: int):
        self.stage, self.total, self.done = stage, total, 0
        self._last_log = 0.0

    def advance(self, n: int = 1) -> None:
        self.done += n
        for fn in list(_listeners):
            fn(self.stage, self.done, self.total)
        now = time.monotonic()
        if not _listeners and (now - self._last_log > 5 or self.done == self.total):
            self._last_log = now
            log.info("%s: %d/%d", self.stage, self.done, self.total)


@contextmanager
def track(stage: str, total: int):
    t = Tracker(stage, total)
    for fn in list(_listeners):
        fn(stage, 0, total)
    yield t
