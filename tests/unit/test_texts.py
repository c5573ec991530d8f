"""Texts: task lines in one buffer, read back exactly as they went in."""

from __future__ import annotations

import pytest

from mpifarmer.scheduling.texts import Texts

LINES = ["echo a", "", "ünï ✓ 🎉", "lone \ud800 surrogate", "tab\tand \\ backslash", "x" * 5000]


def test_every_string_comes_back_as_it_went_in() -> None:
    texts = Texts(LINES[:2])
    texts.extend(LINES[2:5])
    texts.append(LINES[5])
    assert len(texts) == len(LINES)
    assert [texts[i] for i in range(len(LINES))] == LINES == list(texts)
    assert texts[-1] == LINES[-1] and texts[2:4] == LINES[2:4] and texts[4:] == LINES[4:]
    assert texts == LINES and texts != LINES[:-1] and texts == Texts(LINES)
    with pytest.raises(IndexError):
        texts[len(LINES)]


@pytest.mark.parametrize(("other", "expected"), [
    (LINES, None),
    (LINES[:3], None),  # a prefix: no difference over the common length
    ([*LINES[:3], "changed", *LINES[4:]], 3),
    (["echo a", "x", *LINES[2:]], 1),  # same total length, a different split
    (["echo ", "a", *LINES[2:]], 0),
])
def test_first_difference(other: list[str], expected: int | None) -> None:
    assert Texts(LINES).first_difference(Texts(other)) == expected
    assert Texts(other).first_difference(Texts(LINES)) == expected
