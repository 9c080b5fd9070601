"""Splitting text into sentences: examples, and the promises as properties."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tts.text import split_text


def _squash(text: str) -> str:
    return "".join(c for c in text if not c.isspace())


@pytest.mark.parametrize(
    ("text", "pieces"),
    [
        ("Hello world. How are you?", ["Hello world.", "How are you?"]),
        ("Wait! Really? Yes\u2026 fine", ["Wait!", "Really?", "Yes\u2026", "fine"]),
        ("Mr. Smith met Dr. Who, e.g. at noon.", ["Mr. Smith met Dr. Who, e.g. at noon."]),
        ("Pi is 3.14 and e is 2.72. Next.", ["Pi is 3.14 and e is 2.72.", "Next."]),
        ("J. R. R. Tolkien wrote it.", ["J. R. R. Tolkien wrote it."]),
        ('He said "Stop." Then left.', ['He said "Stop."', "Then left."]),
        ("line one\nline two\n\n  line three  ", ["line one", "line two", "line three"]),
        ("", []),
        (" \n\t ", []),
    ],
)
def test_split_examples(text: str, pieces: list[str]) -> None:
    assert split_text(text) == pieces


def test_a_long_sentence_is_cut_after_commas_then_at_spaces() -> None:
    clause = "word " * 30 + "end,"  # 154 characters
    pieces = split_text(" ".join([clause] * 6), max_chars=400)
    assert all(len(p) <= 400 for p in pieces)
    assert all(p.endswith(",") for p in pieces)
    assert split_text("a" * 1000, max_chars=400) == ["a" * 400, "a" * 400, "a" * 200]
    spaced = split_text("abc " * 250, max_chars=400)
    assert all(len(p) <= 400 and not p.endswith("ab") for p in spaced)


def test_max_chars_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_chars"):
        split_text("x", max_chars=0)


_ALPHABET = st.sampled_from([*"ab .!?\u2026,;:\n\t\"')3Mr\u00a0e", "Mr. ", "e.g. ", "3.14"])
_TEXT = st.lists(_ALPHABET, max_size=200).map("".join)


@settings(max_examples=300, deadline=None)
@given(text=st.one_of(_TEXT, st.text(max_size=300)), max_chars=st.integers(1, 60))
def test_pieces_give_back_the_text_and_are_never_empty(text: str, max_chars: int) -> None:
    pieces = split_text(text, max_chars)
    assert _squash("".join(pieces)) == _squash(text)
    assert all(p and p == p.strip() for p in pieces)
    assert all(len(p) <= max_chars for p in pieces)


@settings(max_examples=100, deadline=None)
@given(words=st.lists(st.text("abghkl", min_size=1, max_size=8), min_size=1, max_size=20))
def test_sentences_without_abbreviations_come_out_whole(words: list[str]) -> None:
    sentences = [" ".join(words[: i + 1]).capitalize() + "." for i in range(len(words))]
    sentences = [s for s in sentences if len(s.split()[-1]) > 2]  # no initials ("A.")
    assert split_text(" ".join(sentences)) == sentences
