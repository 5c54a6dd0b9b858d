"""Typed segmentation results: flags with a kind, the evidence behind the level names.

A segmenter never says "these are the levels" without saying *why*: which landmark fixed the
count (:class:`Anchor`), how many bodies were counted from it to each level, and what it is
unsure of (:class:`Flag`, each of a :class:`FlagKind`). The confidence of every level is capped
by the kinds of flag raised (:data:`CONFIDENCE_CAP`), so no code searches message texts.

A result with a flag capping the confidence below :data:`CONFIRM_BELOW`, or with no landmark
(anchor ``ASSUMED``), needs the surgeon to confirm or name one level before a plan is proposed
on it (``needs_confirmation``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Iterable

from ..volume import Volume

__all__ = ["FlagKind", "Flag", "Anchor", "LevelEvidence", "SegmentationResult",
           "CONFIDENCE_CAP", "CONFIRM_BELOW", "apply_caps"]


class FlagKind(str, Enum):
    """What a segmenter is unsure of. The value is the stable id written to files."""

    NO_SACRUM = "no_sacrum"                  # no sacrum recognised: counted from an assumed level
    LEVEL_UNKNOWN = "level_unknown"          # no landmark at all: names relative to one assumed level
    COUNTED_FROM_RIBS = "counted_from_ribs"  # no sacrum: counted from the last rib (T12)
    LOWEST_CARRIES_RIBS = "lowest_carries_ribs"  # the lowest vertebra in view has ribs
    TRANSITIONAL_L6 = "transitional_l6"      # six lumbar vertebrae
    SACRALISED_L5 = "sacralised_l5"          # L5's transverse process meets the sacrum
    LUMBAR_RIB = "lumbar_rib"                # ribs on the fifth vertebra above the sacrum
    ANCHORS_DISAGREE = "anchors_disagree"    # the sacrum and the ribs give different counts
    TRANSITIONAL_UNSEEN = "transitional_unseen"  # 7+ vertebrae above the sacrum and no ribs
    COLLAPSED_DISC = "collapsed_disc"        # no disc space seen between two vertebrae
    BODY_MISSED = "body_missed"              # a body not segmented between found ones
    COUNT_IN_DOUBT = "count_in_doubt"        # split body / thin disc / promontory in doubt
    PARTIAL_TOP = "partial_top"              # the top body is cut by the field of view
    INCOMPLETE_LABELS = "incomplete_labels"  # a class not produced (e.g. discs)


#: Highest confidence a level may have while a flag of this kind is raised.
CONFIDENCE_CAP: dict[FlagKind, float] = {
    FlagKind.NO_SACRUM: 0.2,
    FlagKind.LEVEL_UNKNOWN: 0.1,
    FlagKind.COUNTED_FROM_RIBS: 0.5,
    FlagKind.LOWEST_CARRIES_RIBS: 0.2,
    FlagKind.TRANSITIONAL_L6: 0.5,
    FlagKind.SACRALISED_L5: 0.5,
    FlagKind.LUMBAR_RIB: 0.5,
    FlagKind.ANCHORS_DISAGREE: 0.5,
    FlagKind.TRANSITIONAL_UNSEEN: 0.5,
    FlagKind.COLLAPSED_DISC: 0.5,
    FlagKind.BODY_MISSED: 0.7,
    FlagKind.COUNT_IN_DOUBT: 0.5,
    FlagKind.PARTIAL_TOP: 1.0,
    FlagKind.INCOMPLETE_LABELS: 1.0,
}

#: A flag capping the confidence below this makes the user confirm the levels.
CONFIRM_BELOW = 0.8


@dataclass(frozen=True)
class Flag:
    """One finding a reader must see.

    Attributes
    ----------
    kind : FlagKind
        What it is (stable; code branches on this, never on ``message``).
    message : str
        Plain-language text for the user.
    levels : tuple of str
        The vertebra or motor-unit names concerned (empty: the whole count).
    """

    kind: FlagKind
    message: str
    levels: tuple[str, ...] = ()

    def __str__(self) -> str:
        return self.message

    @property
    def cap(self) -> float:
        return CONFIDENCE_CAP.get(self.kind, 1.0)

    def to_dict(self) -> dict:
        return {"kind": self.kind.value, "levels": list(self.levels), "message": self.message}

    @classmethod
    def from_dict(cls, d: dict) -> "Flag":
        """Inverse of :meth:`to_dict` (unknown kinds are refused with ValueError)."""
        return cls(FlagKind(d["kind"]), str(d.get("message", "")), tuple(d.get("levels", ())))


class Anchor(str, Enum):
    """The landmark that fixed the level count."""

    SACRUM = "sacrum"              # counted up from the sacrum / promontory
    LAST_RIB = "last_rib"          # the last rib-bearing vertebra is T12
    SACRUM_AND_RIBS = "sacrum_and_ribs"  # both, and they agree
    FIRST_RIB = "first_rib"        # first rib = T1 with C7 in view
    BOTH_RIBS = "first_and_last_rib"  # first rib = T1 and last rib = T12, twelve between, agreeing
    ASSUMED = "assumed"            # no landmark: the lowest vertebra taken for a level
    LABELS_FILE = "labels_file"    # names from an imported label map
    USER = "user"                  # the surgeon confirmed or named a level


@dataclass
class LevelEvidence:
    """Why each level has its name.

    Attributes
    ----------
    anchor : Anchor
        The landmark the count starts from.
    counted : dict
        ``{level: n}`` vertebrae counted from the anchor to that level (0 = the anchor itself).
    missed : dict
        ``{level: n}`` bodies not seen (inferred from gaps) between the anchor and that level.
    confirmed_level : str or None
        The level the user confirmed or named (``anchor`` is then ``USER``).
    """

    anchor: Anchor = Anchor.ASSUMED
    counted: dict[str, int] = field(default_factory=dict)
    missed: dict[str, int] = field(default_factory=dict)
    confirmed_level: str | None = None

    def to_dict(self) -> dict:
        return {"anchor": self.anchor.value, "counted": dict(self.counted),
                "missed": dict(self.missed), "confirmed_level": self.confirmed_level}

    @classmethod
    def from_dict(cls, d: dict | None) -> "LevelEvidence":
        d = d or {}
        return cls(Anchor(d.get("anchor", Anchor.ASSUMED.value)), dict(d.get("counted", {})),
                   dict(d.get("missed", {})), d.get("confirmed_level"))

    def describe(self, level: str) -> str:
        """One line: how ``level`` was named."""
        what = {Anchor.SACRUM: "from the sacrum", Anchor.LAST_RIB: "from the last rib (T12)",
                Anchor.SACRUM_AND_RIBS: "from the sacrum and the ribs (agreeing)",
                Anchor.FIRST_RIB: "from the first rib (T1)",
                Anchor.BOTH_RIBS: "from the first and the last rib (agreeing)", Anchor.ASSUMED: "from an assumed level",
                Anchor.LABELS_FILE: "from the label file", Anchor.USER: "confirmed by the user"}
        n = self.counted.get(level)
        s = what[self.anchor]
        if self.anchor == Anchor.USER and self.confirmed_level:
            s = f"confirmed by the user ({self.confirmed_level})"
        if n is not None and self.anchor not in (Anchor.USER, Anchor.LABELS_FILE):
            s += f", {n} vertebra(e) counted"
            if self.missed.get(level):
                s += f" ({self.missed[level]} not seen)"
        return s


def apply_caps(confidence: dict[str, float], flags: Iterable[Flag]) -> dict[str, float]:
    """Confidences lowered to the lowest cap of ``flags``. Every flag caps every level, even
    one naming ``levels``: a count in doubt at one level shifts all the names counted past it."""
    top = min((f.cap for f in flags), default=1.0)
    return {k: round(min(float(v), top), 2) for k, v in confidence.items()}


@dataclass
class SegmentationResult:
    """Output of a segmenter.

    Attributes
    ----------
    labels : Volume
        Label map on the input grid (uint16, VerSe numbering, discs 100+upper, 300 canal).
    levels : list of str
        Vertebra names found, cranial to caudal (e.g. ``["T12", "L1", ..., "S1"]``).
    confidence : dict
        ``{level name: 0..1}`` confidence of each level's identification, capped by the flags
        and calibrated on the field-of-view suite: below ``CONFIRM_BELOW`` the user confirms.
    flags : list of Flag
        Typed findings a reader must see.
    evidence : LevelEvidence
        The landmark and counts behind the names.
    extra : dict
        Backend-specific outputs (e.g. ``"centerline_lps"``: (N, 3) array).
    """

    labels: Volume | None
    levels: list[str] = field(default_factory=list)
    confidence: dict[str, float] = field(default_factory=dict)
    flags: list[Flag] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    evidence: LevelEvidence = field(default_factory=LevelEvidence)
    backend: str = ""

    def __post_init__(self) -> None:
        self.confidence = apply_caps(self.confidence, self.flags)

    @property
    def min_confidence(self) -> float:
        return min(self.confidence.values(), default=0.0)

    @property
    def needs_confirmation(self) -> bool:
        """True when the levels are not established: the user must confirm or name one."""
        if self.evidence.anchor in (Anchor.USER, Anchor.LABELS_FILE):
            return False
        # a doubt raised (a flag capping below CONFIRM_BELOW), no landmark at all, or a
        # confidence below CONFIRM_BELOW: the confidences are calibrated on the field-of-view
        # suite (bench/bench_fov_suite.py) so that what is not asked about was right there
        return (not self.levels or self.evidence.anchor == Anchor.ASSUMED
                or any(f.cap < CONFIRM_BELOW for f in self.flags)
                or self.min_confidence < CONFIRM_BELOW)

    def has(self, kind: FlagKind) -> bool:
        return any(f.kind == kind for f in self.flags)

    def summary_dict(self) -> dict:
        """What travels with the labels into the scene, the plan file and the report."""
        return {"backend": self.backend, "levels": list(self.levels),
                "confidence": dict(self.confidence),
                "flags": [f.to_dict() for f in self.flags],
                "evidence": self.evidence.to_dict(),
                "needs_confirmation": self.needs_confirmation}
