"""Counts in words: ``1 launch``, ``2 launches``. A shared leaf: whatever prints a count uses it."""

from __future__ import annotations

__all__ = ["counted"]

#: Plurals that are not the word and an ``s`` (nor ``y`` → ``ies``).
_IRREGULAR = {"launch": "launches", "batch": "batches"}


def counted(n: int, noun: str, plural: str | None = None) -> str:
    """``n`` and ``noun``: ``1 launch``, ``0 launches``, ``2 offline runs`` (the noun is the
    phrase's last word; what follows it goes outside: ``f"{counted(n, 'event')} applied"``).
    ``plural`` when the rule does not know it."""
    if n == 1:
        return f"{n} {noun}"
    if plural is None:
        head, _, last = noun.rpartition(" ")
        if last in _IRREGULAR:
            last = _IRREGULAR[last]
        elif last.endswith("y") and last[-2:-1] not in ("a", "e", "i", "o", "u"):
            last = last[:-1] + "ies"
        else:
            last += "s"
        plural = f"{head} {last}" if head else last
    return f"{n} {plural}"
