"""Progress and cancellation for long-running core functions.

Core functions that can take more than ~100 ms accept ``progress=None, cancel=None``:
``progress(fraction, message)`` with fraction in [0, 1], and ``cancel()`` returning True
when the caller wants to stop, in which case the function raises :class:`Cancelled`.
"""

from __future__ import annotations

from typing import Callable, Optional

__all__ = ["Cancelled", "ProgressFn", "CancelFn", "Reporter"]

ProgressFn = Optional[Callable[[float, str], None]]
CancelFn = Optional[Callable[[], bool]]


class Cancelled(Exception):
    """Raised by a core function when its ``cancel()`` callable returned True."""


class Reporter:
    """Helper combining progress and cancel, with sub-ranges for nested steps.

    Examples
    --------
    >>> r = Reporter(progress, cancel)
    >>> r.step(0.5, "reading")   # raises Cancelled if cancel() is True
    >>> sub = r.sub(0.5, 1.0)    # a Reporter mapping [0, 1] onto [0.5, 1.0]
    """

    def __init__(self, progress: ProgressFn = None, cancel: CancelFn = None,
                 lo: float = 0.0, hi: float = 1.0) -> None:
        self.progress, self.cancel, self.lo, self.hi = progress, cancel, lo, hi

    def check(self) -> None:
        """Raise :class:`Cancelled` when cancellation was asked for."""
        if self.cancel is not None and self.cancel():
            raise Cancelled()

    def step(self, fraction: float, message: str = "") -> None:
        """Report ``fraction`` of this reporter's range, then check for cancel."""
        if self.progress is not None:
            f = self.lo + (self.hi - self.lo) * min(max(fraction, 0.0), 1.0)
            self.progress(f, message)
        self.check()

    def callback(self):
        """A ``progress(fraction, message)`` callable reporting into this reporter's range."""
        if self.progress is None:
            return None
        return lambda fraction, message="": self.progress(
            self.lo + (self.hi - self.lo) * min(max(fraction, 0.0), 1.0), message)

    def sub(self, lo: float, hi: float) -> "Reporter":
        """A reporter for a sub-step covering [lo, hi] of this one."""
        span = self.hi - self.lo
        return Reporter(self.progress, self.cancel, self.lo + span * lo, self.lo + span * hi)
