"""Graceful shutdown: SIGTERM or SIGINT asks the loop to stop after the work in hand."""

from __future__ import annotations

import signal
import threading
from types import FrameType


def stop_on_signals() -> threading.Event:
    """An event set on SIGTERM or SIGINT; the run loop finishes its batch, commits and closes."""
    stop = threading.Event()

    def request_stop(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    return stop
