"""A compact list of strings: one byte buffer and one array of end offsets.

A million task lines as Python strings cost about 80 MB (an object and a pointer each); as
UTF-8 bytes in one buffer they cost their length plus 8 bytes. The ledger and the task-list
reader hold every task line, so both keep them here. Strings are encoded with
``surrogatepass``, so that any ``str`` (a JSON journal can hold lone surrogates) comes back as
it went in.
"""

from __future__ import annotations

import sys
from array import array
from collections.abc import Iterable, Iterator, Sequence
from typing import overload

__all__ = ["Texts"]


class Texts(Sequence[str]):
    """An append-only sequence of strings, stored as one UTF-8 buffer."""

    __slots__ = ("_data", "_ends")

    def __init__(self, items: Iterable[str] = ()) -> None:
        self._data = bytearray()
        self._ends = array("Q")
        self.extend(items)

    def extend_encoded(self, data: bytes, lengths: Iterable[int]) -> None:
        """Append the UTF-8 strings that ``data`` holds back to back, of byte lengths ``lengths``
        given as running totals (the ends of each within ``data``)."""
        base = len(self._data)
        self._data += data
        if base:
            self._ends.extend(end + base for end in lengths)
        else:
            self._ends.extend(lengths)

    @classmethod
    def from_buffers(cls, data: bytes, ends: bytes) -> Texts:
        """The inverse of :meth:`buffers`."""
        texts = cls()
        texts._data += data
        texts._ends.frombytes(ends)
        if sys.byteorder != "little":
            texts._ends.byteswap()
        if texts._ends and texts._ends[-1] != len(texts._data):
            raise ValueError("Texts buffers disagree")
        return texts

    def buffers(self) -> tuple[bytes, bytes]:
        """The UTF-8 data and the end offsets (little-endian 64-bit), for storing."""
        ends = self._ends if sys.byteorder == "little" else _swapped(self._ends)
        return bytes(self._data), ends.tobytes()

    def __len__(self) -> int:
        return len(self._ends)

    @overload
    def __getitem__(self, index: int) -> str: ...
    @overload
    def __getitem__(self, index: slice) -> list[str]: ...
    def __getitem__(self, index: int | slice) -> str | list[str]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self._ends):
            raise IndexError("Texts index out of range")
        start = self._ends[index - 1] if index else 0
        return self._data[start : self._ends[index]].decode("utf-8", "surrogatepass")

    def __iter__(self) -> Iterator[str]:
        data, start = self._data, 0
        for end in self._ends:
            yield data[start:end].decode("utf-8", "surrogatepass")
            start = end

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Texts):
            return self._ends == other._ends and self._data == other._data
        if isinstance(other, Sequence) and not isinstance(other, str | bytes):
            return len(self) == len(other) and all(a == b for a, b in zip(self, other, strict=True))
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        return f"Texts({list(self)!r})" if len(self) <= 10 else f"<Texts of {len(self)} strings>"

    def append(self, text: str) -> None:
        self._data += text.encode("utf-8", "surrogatepass")
        self._ends.append(len(self._data))

    def extend(self, items: Iterable[str]) -> None:
        data, ends = self._data, self._ends
        for text in items:
            data += text.encode("utf-8", "surrogatepass")
            ends.append(len(data))

    def first_difference(self, other: Texts) -> int | None:
        """The lowest index at which ``self`` and ``other`` differ, over the length of the
        shorter one; None if one is a prefix of the other. Compares bytes, so a long list that
        matches costs one buffer comparison."""
        common = min(len(self), len(other))
        if common == 0:
            return None
        size = self._ends[common - 1]
        if other._ends[common - 1] == size:
            with memoryview(self._ends) as mine, memoryview(other._ends) as theirs:
                same = mine[:common] == theirs[:common]
            if same:
                with memoryview(self._data) as mine, memoryview(other._data) as theirs:
                    same = mine[:size] == theirs[:size]
            if same:
                return None
        return next(i for i in range(common) if self[i] != other[i])


def _swapped(ends: array[int]) -> array[int]:
    copy = array("Q", ends)
    copy.byteswap()
    return copy
