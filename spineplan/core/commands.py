"""Undoable commands and the undo stack. Every edit of the scene goes through one."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from .events import Signal

__all__ = ["Command", "FunctionCommand", "SetAttrCommand", "UndoStack"]


class Command:
    """Base class: subclasses implement ``do`` and ``undo``.

    ``merge_id`` lets consecutive commands of one drag merge into one undo step:
    when two pushed commands have the same non-None ``merge_id`` and
    ``merge(other)`` returns True, only one step is kept.
    """

    text: str = ""
    merge_id: Any = None

    def do(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def undo(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def merge(self, other: "Command") -> bool:
        """Absorb ``other`` (already done) into self; return True on success."""
        return False


@dataclass
class FunctionCommand(Command):
    """A command from two callables."""

    do_fn: Callable[[], None]
    undo_fn: Callable[[], None]
    text: str = ""
    merge_id: Any = None

    def do(self) -> None:
        self.do_fn()

    def undo(self) -> None:
        self.undo_fn()

    def merge(self, other: Command) -> bool:
        if isinstance(other, FunctionCommand):
            self.do_fn = other.do_fn
            return True
        return False


class SetAttrCommand(Command):
    """Set ``obj.name = value``, remembering the old value; calls ``notify()`` after each change."""

    def __init__(self, obj: Any, name: str, value: Any, notify: Callable[[], None] | None = None,
                 text: str = "", merge_id: Any = None) -> None:
        self.obj, self.name, self.value = obj, name, value
        self.old = getattr(obj, name)
        self.notify = notify
        self.text = text or f"Set {name}"
        self.merge_id = merge_id

    def _apply(self, v: Any) -> None:
        setattr(self.obj, self.name, v)
        if self.notify:
            self.notify()

    def do(self) -> None:
        self._apply(self.value)

    def undo(self) -> None:
        self._apply(self.old)

    def merge(self, other: Command) -> bool:
        if isinstance(other, SetAttrCommand) and other.obj is self.obj and other.name == self.name:
            self.value = other.value
            return True
        return False


class UndoStack:
    """Linear undo/redo history.

    Events: ``changed()`` after any push/undo/redo/clear.
    """

    def __init__(self, limit: int = 500) -> None:
        self._done: list[Command] = []
        self._undone: list[Command] = []
        self.limit = limit
        self.changed = Signal("changed")
        self.clean_index = 0

    def push(self, cmd: Command) -> Command:
        """Execute ``cmd`` and record it (merging with the previous step when allowed)."""
        cmd.do()
        self._undone.clear()
        top = self._done[-1] if self._done else None
        if (top is not None and cmd.merge_id is not None and top.merge_id == cmd.merge_id
                and top.merge(cmd)):
            pass
        else:
            self._done.append(cmd)
            if len(self._done) > self.limit:
                self._done.pop(0)
                self.clean_index -= 1
        self.changed.emit()
        return cmd

    def undo(self) -> bool:
        """Undo the last step; False when there is nothing to undo."""
        if not self._done:
            return False
        cmd = self._done.pop()
        cmd.undo()
        self._undone.append(cmd)
        self.changed.emit()
        return True

    def redo(self) -> bool:
        """Redo the last undone step; False when there is nothing to redo."""
        if not self._undone:
            return False
        cmd = self._undone.pop()
        cmd.do()
        self._done.append(cmd)
        self.changed.emit()
        return True

    def end_merge(self) -> None:
        """Close the current merge group (e.g. on mouse release)."""
        if self._done:
            self._done[-1].merge_id = None

    def clear(self) -> None:
        self._done.clear()
        self._undone.clear()
        self.clean_index = 0
        self.changed.emit()

    def discard(self, predicate: Callable[[Command], bool]) -> int:
        """Drop the recorded steps for which ``predicate`` is true (steps that no longer apply,
        e.g. edits of a label map that has been replaced); returns how many were dropped."""
        before = len(self._done)
        self._done = [c for c in self._done if not predicate(c)]
        n = before - len(self._done)
        m = len(self._undone)
        self._undone = [c for c in self._undone if not predicate(c)]
        n_all = n + m - len(self._undone)
        if n:
            self.clean_index = -1  # the history no longer leads back to the saved state
        if n_all:
            self.changed.emit()
        return n_all

    def can_undo(self) -> bool:
        return bool(self._done)

    def can_redo(self) -> bool:
        return bool(self._undone)

    def undo_text(self) -> str:
        return self._done[-1].text if self._done else ""

    def redo_text(self) -> str:
        return self._undone[-1].text if self._undone else ""

    def __len__(self) -> int:
        return len(self._done)

    def is_clean(self) -> bool:
        return len(self._done) == self.clean_index

    def set_clean(self) -> None:
        self.clean_index = len(self._done)
