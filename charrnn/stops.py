"""Stop strings: generation ends when its text ends with one of them. Text that may begin a
stop string is held back while streaming, so a stop string is never half printed."""

from __future__ import annotations

import re
from collections.abc import Sequence

from charrnn.errors import ConfigError

_ESCAPE = re.compile(r"\\(x[0-9a-fA-F]{2}|u[0-9a-fA-F]{4}|U[0-9a-fA-F]{8}|.|$)", re.S)
_SIMPLE = {"n": "\n", "t": "\t", "r": "\r", "0": "\0", "\\": "\\", "'": "'", '"': '"'}


def unescape(text: str) -> str:
    """A stop string as a shell user types it: `\\n`, `\\t`, `\\r`, `\\0`, `\\\\`, `\\xHH`,
    `\\uXXXX` and `\\UXXXXXXXX` are the characters they name; another escape is an error."""

    def replace(match: re.Match) -> str:
        code = match.group(1)
        if code in _SIMPLE:
            return _SIMPLE[code]
        if not code:
            raise ConfigError(f"stop string '{text}' ends in a lone backslash")
        if code[0] in "xuU" and len(code) > 1:
            value = int(code[1:], 16)
            if value > 0x10FFFF or 0xD800 <= value < 0xE000:
                raise ConfigError(f"stop string '{text}': \\{code} is not a character")
            return chr(value)
        raise ConfigError(
            f"stop string '{text}': unknown escape \\{code} (write \\\\ for a backslash)"
        )

    unescaped = _ESCAPE.sub(replace, text)
    if not unescaped:
        raise ConfigError("a stop string cannot be empty")
    return unescaped


class StopText:
    """Text as generated, cut at the first stop string: `push` takes each new symbol and gives
    back the text now safe to show; `stop` is the stop string that ended it (None until then)."""

    def __init__(self, stops: Sequence[str] = (), keep_stop: bool = False) -> None:
        if any(not s for s in stops):
            raise ConfigError("a stop string cannot be empty")
        self.stops, self.keep_stop = tuple(dict.fromkeys(stops)), keep_stop
        self.pending = ""  # shown text not yet safe: it may begin a stop string
        self.stop: str | None = None

    def push(self, piece: str) -> str:
        """Take the next generated symbol; the text that can be shown now ("" once stopped)."""
        if self.stop is not None:
            return ""
        if not self.stops:
            return piece
        self.pending += piece
        found = [(self.pending.find(s), -len(s), s) for s in self.stops if s in self.pending]
        if found:
            at, _, self.stop = min(found)  # the earliest, the longest of those starting there
            shown = self.pending[:at] + (self.stop if self.keep_stop else "")
            self.pending = ""
            return shown
        cut = len(self.pending) - self.held_back(self.pending)
        shown, self.pending = self.pending[:cut], self.pending[cut:]
        return shown

    def held_back(self, text: str) -> int:
        """How many last characters of `text` may begin a stop string."""
        longest = 0
        for s in self.stops:
            for n in range(min(len(s) - 1, len(text)), longest, -1):
                if s.startswith(text[-n:]):
                    longest = n
                    break
        return longest

    def flush(self) -> str:
        """The text held back when generation ended without a stop."""
        shown, self.pending = self.pending, ""
        return shown
