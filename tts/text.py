"""Split long text into pieces a speech engine can say one at a time.

Pieces end at sentence boundaries (``.``, ``!``, ``?``, ``…`` followed by a space, and line
breaks). A full stop after a known abbreviation ("Mr.", "e.g.") or a single initial ("J.") does
not end a sentence, and one inside a number ("3.14") never does. A sentence longer than
``max_chars`` is cut after a comma, semicolon or colon if there is one, else at a space, else
(one enormous word) at ``max_chars``.

The promise, held by property tests: no piece is empty or has surrounding whitespace, and the
pieces joined give back the text, up to whitespace.
"""

from __future__ import annotations

import re

MAX_CHARS = 400

_ABBREVIATIONS = frozenset(
    {"mr", "mrs", "ms", "mx", "dr", "prof", "sr", "jr", "st", "vs", "e.g", "i.e", "cf", "fig",
     "approx", "dept", "no"}
)  # fmt: skip
# Terminal punctuation, then any closing quotes or brackets, then whitespace.
_SENTENCE_END = re.compile("[.!?\u2026]+[\"'\u201d\u2019\u00bb)\\]]*(?=\\s)")
_LAST_WORD = re.compile("([^\\s(\"'\u201c\u2018\u00ab\\[]*)$")
_SOFT_BREAK = re.compile(r"[,;:]\s")


def split_text(text: str, max_chars: int = MAX_CHARS) -> list[str]:
    """Split ``text`` into sentences of at most ``max_chars`` characters each."""
    if max_chars < 1:
        raise ValueError(f"max_chars must be at least 1, got {max_chars}")
    pieces: list[str] = []
    for line in text.splitlines():
        for sentence in _sentences(line):
            pieces.extend(_cap(sentence, max_chars))
    return pieces


def _sentences(line: str) -> list[str]:
    out: list[str] = []
    start = 0
    for match in _SENTENCE_END.finditer(line):
        if match.group() == "." and _is_abbreviation(line[start : match.start()]):
            continue
        out.append(line[start : match.end()])
        start = match.end()
    out.append(line[start:])
    return [s.strip() for s in out if s.strip()]


def _is_abbreviation(before_dot: str) -> bool:
    found = _LAST_WORD.search(before_dot)
    word = found.group(1).lower() if found else ""
    return word in _ABBREVIATIONS or (len(word) == 1 and word.isalpha())


def _cap(sentence: str, max_chars: int) -> list[str]:
    out: list[str] = []
    rest = sentence
    while len(rest) > max_chars:
        window = rest[: max_chars + 1]
        cut = _last_soft_break(window)
        if cut is None:
            space = max((i for i, c in enumerate(window) if c.isspace()), default=0)
            cut = space if space > 0 else max_chars
        head, rest = rest[:cut].strip(), rest[cut:].strip()
        if head:
            out.append(head)
    if rest:
        out.append(rest)
    return out


def _last_soft_break(window: str) -> int | None:
    ends = [m.start() + 1 for m in _SOFT_BREAK.finditer(window)]
    return ends[-1] if ends else None
