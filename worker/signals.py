"""SIGTERM / SIGINT: the first asks for a graceful drain, a second one forces it."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable

from workerfleet.worker.logging_setup import LOGGER_NAME

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)

log = logging.getLogger(LOGGER_NAME + ".signals")


class StopSignals:
    """Counts stop signals: 1 -> ``on_stop()``, 2 or more -> ``on_force()``."""

    def __init__(self, on_stop: Callable[[], None], on_force: Callable[[], None]) -> None:
        self.on_stop, self.on_force = on_stop, on_force
        self.received = 0

    def handle(self, signum: int) -> None:
        self.received += 1
        name = signal.Signals(signum).name
        if self.received == 1:
            log.info("stop requested: draining", extra={"signal": name})
            self.on_stop()
        else:
            log.warning("second stop signal: releasing running jobs now", extra={"signal": name})
            self.on_force()

    def install(self, loop: asyncio.AbstractEventLoop) -> Callable[[], None]:
        """Route the stop signals here; returns the function that undoes it."""
        for signum in STOP_SIGNALS:
            loop.add_signal_handler(signum, self.handle, signum)

        def uninstall() -> None:
            for signum in STOP_SIGNALS:
                loop.remove_signal_handler(signum)

        return uninstall
