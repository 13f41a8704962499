"""Loss curves as a terminal chart: braille dots (2 x 4 per character) drawn as rich Text."""

from __future__ import annotations

import itertools
import math

from rich.text import Text

DOTS = ((0x01, 0x08), (0x02, 0x10), (0x04, 0x20), (0x40, 0x80))  # [row][column] of a cell
SERIES = (("train", "train_loss", "cyan"), ("validation", "val_loss", "magenta"))


def loss_chart(records: list[dict], width: int = 64, height: int = 12) -> Text | None:
    """Train and validation loss (nats/char) over steps; None with fewer than two points."""
    series = [
        (name, colour, [(r["step"], r[key]) for r in records if _finite(r.get(key))])
        for name, key, colour in SERIES
    ]
    points = [p for *_, pts in series for p in pts]
    if len(points) < 2:
        return None
    x0, x1 = min(p[0] for p in points), max(p[0] for p in points)
    y0, y1 = min(p[1] for p in points), max(p[1] for p in points)
    x1, y1 = (x1 if x1 > x0 else x0 + 1), (y1 if y1 > y0 else y0 + 1e-3)
    cols, rows = width * 2, height * 4
    dots = [[0] * width for _ in range(height)]
    owner: list[list[str | None]] = [[None] * width for _ in range(height)]

    def put(x: float, y: float, colour: str) -> None:
        c = round((x - x0) / (x1 - x0) * (cols - 1))
        r = round((1 - (y - y0) / (y1 - y0)) * (rows - 1))
        dots[r // 4][c // 2] |= DOTS[r % 4][c % 2]
        owner[r // 4][c // 2] = colour

    for _, colour, pts in series:
        for (xa, ya), (xb, yb) in itertools.pairwise(pts):  # straight segments, a dot per column
            n = max(2, round(abs(xb - xa) / (x1 - x0) * cols) + 1)
            for k in range(n):
                f = k / (n - 1)
                put(xa + f * (xb - xa), ya + f * (yb - ya), colour)
        if len(pts) == 1:
            put(*pts[0], colour)
    labels = {0: f"{y1:.3f}", height // 2: f"{(y0 + y1) / 2:.3f}", height - 1: f"{y0:.3f}"}
    margin = max(len(s) for s in labels.values()) + 1
    text = Text()
    for r in range(height):
        text.append(labels.get(r, "").rjust(margin - 1) + "┤")
        for c in range(width):
            text.append(chr(0x2800 + dots[r][c]), style=owner[r][c] or "")
        text.append("\n")
    left, right = f"step {x0:,}", f"{x1:,}"
    text.append(" " * margin + left + right.rjust(width - len(left)) + "\n")
    text.append(" " * margin + "loss, nats/char: ")
    for name, colour, pts in series:
        if pts:
            text.append(f"━ {name}  ", style=colour)
    return text


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)
