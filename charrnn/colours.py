"""The palettes every view shares: surprisal (white, sure, to red, surprised) and a
diverging one for unit values (blue -1, white 0, red +1), drawn alike by the terminal, the
REPL and the HTML pages; and symbols made readable in a list."""

from __future__ import annotations

import itertools
import math
import unicodedata

SCALE_BITS = 8.0  # the heat-map's red end; more surprising symbols are as red
STOPS = ((0, (255, 255, 255)), (2, (255, 243, 176)), (4, (255, 196, 107)),
         (6, (255, 123, 90)), (8, (215, 38, 61)))  # fmt: skip


def surprisal_rgb(bits: float) -> tuple[int, int, int]:
    """White at 0 bits through yellow and orange to red at SCALE_BITS and beyond."""
    b = min(max(float(bits), 0.0), SCALE_BITS)
    for (x0, c0), (x1, c1) in itertools.pairwise(STOPS):
        if b <= x1:
            f = (b - x0) / (x1 - x0)
            return tuple(round(a + f * (z - a)) for a, z in zip(c0, c1, strict=False))
    return STOPS[-1][1]


def diverging_rgb(value: float) -> tuple[int, int, int]:
    """Blue at -1, white at 0, red at +1 (values clipped)."""
    v = min(max(float(value), -1.0), 1.0) if math.isfinite(value) else 0.0
    if v < 0:
        return (round(255 + v * 222), round(255 + v * 152), 255)  # to (33, 102, 255)
    return (255, round(255 - v * 200), round(255 - v * 200))  # to (255, 55, 55)


def hex_colour(rgb: tuple[int, int, int]) -> str:
    return "#{:02x}{:02x}{:02x}".format(*rgb)


def readable(symbol: str) -> str:
    """A symbol as a person can read it in a list: space, newline and controls made visible."""
    names = {" ": "␣", "\n": "↵", "\t": "⇥", "\r": "\\r"}
    if symbol in names:
        return names[symbol]
    if all(unicodedata.category(c)[0] == "C" for c in symbol):
        return symbol.encode("unicode_escape").decode("ascii")
    return symbol


def surprisal_legend() -> list[tuple[str, tuple[int, int, int]]]:
    """The surprisal scale's labelled steps, 0 to SCALE_BITS bits (the last one and above)."""
    top = int(SCALE_BITS)
    return [(f"{b}{'+' if b == top else ''}", surprisal_rgb(b)) for b in range(top + 1)]


def diverging_legend() -> list[tuple[str, tuple[int, int, int]]]:
    """The diverging scale's labelled steps."""
    return [(f"{v:+g}", diverging_rgb(v)) for v in (-1, -0.5, 0, 0.5, 1)]
