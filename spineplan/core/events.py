"""A minimal synchronous event emitter for the model (no Qt).

Views subscribe to model events; the model never calls a view. Qt adaptors
re-emit these as Qt signals on the GUI thread when needed.
"""

from __future__ import annotations

import weakref
from typing import Any, Callable

__all__ = ["Signal"]


class Signal:
    """A list of callbacks called with the emitted arguments.

    Bound methods are held weakly so that a closed view does not keep itself
    alive through the model; plain functions and lambdas are held strongly.
    """

    def __init__(self, name: str = "") -> None:
        self.name = name
        self._slots: list[Any] = []
        self._blocked = 0

    def connect(self, slot: Callable[..., Any]) -> Callable[..., Any]:
        """Subscribe ``slot``; returns it so the method works as a decorator."""
        if hasattr(slot, "__self__") and hasattr(slot, "__func__"):
            ref: Any = weakref.WeakMethod(slot)
        else:
            ref = lambda s=slot: s  # noqa: E731 - strong reference
        self._slots.append(ref)
        return slot

    def disconnect(self, slot: Callable[..., Any] | None = None) -> None:
        """Unsubscribe ``slot`` (all slots when None)."""
        if slot is None:
            self._slots.clear()
            return
        self._slots = [r for r in self._slots if r() is not None and r() != slot]

    def emit(self, *args: Any, **kwargs: Any) -> None:
        """Call every live subscriber in connection order."""
        if self._blocked:
            return
        alive = []
        for ref in list(self._slots):
            fn = ref()
            if fn is None:
                continue
            alive.append(ref)
            fn(*args, **kwargs)
        self._slots = alive

    def blocked(self):
        """Context manager that suppresses emission."""
        sig = self

        class _Block:
            def __enter__(self_inner):
                sig._blocked += 1

            def __exit__(self_inner, *exc):
                sig._blocked -= 1

        return _Block()

    def __len__(self) -> int:
        return sum(1 for r in self._slots if r() is not None)
