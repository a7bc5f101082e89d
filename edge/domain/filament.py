"""The filament a print used, from OctoPrint's analysis of its file and how far it got. Pure."""

from __future__ import annotations


def used_length_mm(analysed_mm: float | None, completion: float | None, done: bool) -> float:
    """All of the analysed length when the print finished; the share its progress reached when
    it stopped early (OctoPrint's completion, 0-100, goes by file position: extrusion is spread
    through a G-code file closely enough to bill by)."""
    if analysed_mm is None or analysed_mm <= 0:
        return 0.0
    if done:
        return analysed_mm
    share = min(max((completion or 0.0) / 100.0, 0.0), 1.0)
    return analysed_mm * share
