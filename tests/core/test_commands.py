from spineplan.core.commands import SetAttrCommand, UndoStack
from spineplan.core.events import Signal


class Obj:
    x = 0


def test_undo_redo_and_merge():
    o = Obj()
    st = UndoStack()
    seen = []
    st.changed.connect(lambda: seen.append(o.x))
    st.push(SetAttrCommand(o, "x", 1))
    for v in (2, 3, 4):  # one drag: merges into one step
        st.push(SetAttrCommand(o, "x", v, merge_id="drag"))
    st.end_merge()
    assert o.x == 4 and len(st) == 2
    st.undo()
    assert o.x == 1
    st.undo()
    assert o.x == 0 and not st.can_undo()
    st.redo()
    st.redo()
    assert o.x == 4 and not st.can_redo()
    assert seen[-1] == 4


def test_signal_weak_method_is_dropped():
    class View:
        def __init__(self):
            self.n = 0

        def on(self):
            self.n += 1

    s = Signal()
    v = View()
    s.connect(v.on)
    s.emit()
    assert v.n == 1
    del v
    s.emit()
    assert len(s) == 0
