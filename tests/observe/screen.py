"""A tiny terminal screen: enough of VT100 to read what a live display left on it.

``Screen().feed(text)`` interprets printable characters, ``\\r``, ``\\n``,
backspace, and the CSI sequences a redrawing display uses (cursor up/down/
forward/back/column/position, erase in line, erase in display); colours and
modes (``m``, ``h``, ``l``) are ignored. ``lines()`` is the screen's text.
"""

from __future__ import annotations

import re

_CSI = re.compile(r"\x1b\[([0-9;?]*)([A-Za-z])")
_OSC = re.compile(r"\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)")


class Screen:
    def __init__(self):
        self.rows: list[list[str]] = [[]]
        self.row = 0
        self.col = 0
        self.frames = 0  # how many times the display moved the cursor up (redraws)

    def _line(self) -> list[str]:
        while len(self.rows) <= self.row:
            self.rows.append([])
        return self.rows[self.row]

    def _put(self, ch: str) -> None:
        line = self._line()
        while len(line) < self.col:
            line.append(" ")
        if self.col < len(line):
            line[self.col] = ch
        else:
            line.append(ch)
        self.col += 1

    def feed(self, text: str) -> None:
        text = _OSC.sub("", text)
        pos = 0
        while pos < len(text):
            match = _CSI.match(text, pos)
            if match:
                self._csi(match.group(1), match.group(2))
                pos = match.end()
                continue
            ch = text[pos]
            pos += 1
            if ch == "\r":
                self.col = 0
            elif ch == "\n":
                self.row += 1
                self.col = 0
                self._line()
            elif ch == "\b":
                self.col = max(0, self.col - 1)
            elif ch == "\x1b" or ord(ch) < 32:
                continue
            else:
                self._put(ch)

    def _csi(self, params: str, op: str) -> None:
        numbers = [int(p) for p in params.replace("?", "").split(";") if p.isdigit()]
        n = numbers[0] if numbers else 1
        if op == "A":
            self.row = max(0, self.row - n)
            self.frames += 1
        elif op == "B":
            self.row += n
        elif op == "C":
            self.col += n
        elif op == "D":
            self.col = max(0, self.col - n)
        elif op == "G":
            self.col = max(0, n - 1)
        elif op == "H":
            self.row = max(0, (numbers[0] if numbers else 1) - 1)
            self.col = max(0, (numbers[1] if len(numbers) > 1 else 1) - 1)
        elif op == "K":
            line = self._line()
            mode = numbers[0] if numbers else 0
            if mode == 2:
                line.clear()
            elif mode == 0:
                del line[self.col:]
            else:
                for k in range(min(self.col, len(line))):
                    line[k] = " "
        elif op == "J":
            mode = numbers[0] if numbers else 0
            if mode in (2, 3):
                self.rows = [[]]
            elif mode == 0:
                del self._line()[self.col:]
                del self.rows[self.row + 1:]

    def lines(self) -> list[str]:
        return ["".join(line).rstrip() for line in self.rows]

    def text(self) -> str:
        return "\n".join(self.lines())
