"""The words a Vosk/Kaldi model knows, read from its files (no model is loaded).

A grammar may only use words of the model: Vosk leaves any other word out of a grammar without a
word of warning, so a menu phrase with such a word is never recognised. ``ivr dialplan check`` warns
about them with :func:`model_words`.

Big models ship ``graph/words.txt`` (``word id`` per line); small ones have the words only as the
symbol table inside ``graph/Gr.fst`` (OpenFst binary format: a header, then the input and output
symbol tables, each ``magic, name, available key, size, size x (word, key)``). Both readers are
bounded (:data:`MAX_WORDS` entries, :data:`MAX_WORD_BYTES` per word) and read only what they need.
"""

from __future__ import annotations

import functools
import struct
from pathlib import Path
from typing import BinaryIO

MAX_WORDS = 5_000_000
MAX_WORD_BYTES = 1024
_FST_MAGIC = 2125659606
_SYMBOLS_MAGIC = 2125658996


class VocabularyError(ValueError):
    """The model's files do not hold a readable word list."""


def _read(f: BinaryIO, n: int) -> bytes:
    data = f.read(n)
    if len(data) != n:
        raise VocabularyError("the file ends early")
    return data


def _i32(f: BinaryIO) -> int:
    return int(struct.unpack("<i", _read(f, 4))[0])


def _i64(f: BinaryIO) -> int:
    return int(struct.unpack("<q", _read(f, 8))[0])


def _string(f: BinaryIO) -> bytes:
    n = _i32(f)
    if not 0 <= n <= MAX_WORD_BYTES:
        raise VocabularyError(f"a string of {n} bytes")
    return _read(f, n)


def fst_output_words(path: Path) -> frozenset[str]:
    """The output symbol table of an OpenFst file (the words of a Kaldi ``G.fst``/``Gr.fst``)."""
    with path.open("rb") as f:
        if _i32(f) != _FST_MAGIC:
            raise VocabularyError(f"{path} is not an OpenFst file")
        _string(f), _string(f)           # fst type, arc type
        _i32(f)                          # version
        flags = _i32(f)
        _read(f, 8 * 4)                  # properties, start, number of states, number of arcs
        tables = [flags & 1, flags & 2]  # input symbols, output symbols
        if not tables[1]:
            raise VocabularyError(f"{path} has no output symbol table")
        raw: list[bytes] = []
        for present in tables:
            if not present:
                continue
            if _i32(f) != _SYMBOLS_MAGIC:
                raise VocabularyError(f"{path}: no symbol table where one should be")
            _string(f)                   # table name
            _i64(f)                      # available key
            size = _i64(f)
            if not 0 <= size <= MAX_WORDS:
                raise VocabularyError(f"{path}: a symbol table of {size} entries")
            raw = _symbols(f, size)      # the last table read is the output one
        # one decode and one case fold for the whole table (a word holding a newline, which no model
        # has, would count as two)
        return frozenset(b"\n".join(raw).decode("utf-8", "replace").casefold().split("\n")) - {""}


_LENGTH = struct.Struct("<i")
_CHUNK = 1 << 20


def _symbols(f: BinaryIO, size: int) -> list[bytes]:
    """``size`` entries ``(int32 length, word, int64 key)`` read in chunks of :data:`_CHUNK` bytes
    (half a million words in a fraction of a second, not one read per word)."""
    out: list[bytes] = []
    buf, at = b"", 0
    for _ in range(size):
        if len(buf) - at < 4:
            buf, at = buf[at:] + f.read(max(_CHUNK, 4)), 0
            if len(buf) < 4:
                raise VocabularyError("the file ends early")
        n = _LENGTH.unpack_from(buf, at)[0]
        if not 0 <= n <= MAX_WORD_BYTES:
            raise VocabularyError(f"a string of {n} bytes")
        end = at + 4 + n + 8
        if end > len(buf):
            buf, at = buf[at:] + f.read(max(_CHUNK, end - len(buf))), 0
            end = 4 + n + 8
            if end > len(buf):
                raise VocabularyError("the file ends early")
        out.append(buf[at + 4:at + 4 + n])
        at = end
    if at < len(buf):
        f.seek(at - len(buf), 1)         # leave the file where the table ends
    return out


def words_txt(path: Path) -> frozenset[str]:
    words: set[str] = set()
    with path.open("rb") as f:
        for i, line in enumerate(f):
            if i >= MAX_WORDS:
                raise VocabularyError(f"{path}: more than {MAX_WORDS} words")
            word = line.split(maxsplit=1)[0] if line.strip() else b""
            if word:
                words.add(word.decode("utf-8", "replace").casefold())
    return frozenset(words)


@functools.lru_cache(maxsize=4)
def model_words(model_dir: Path) -> frozenset[str] | None:
    """The (case-folded) words of the model in ``model_dir``; None when its files have no word list."""
    for name in ("graph/words.txt", "words.txt"):
        if (model_dir / name).is_file():
            return words_txt(model_dir / name)
    for name in ("graph/Gr.fst", "graph/G.fst"):
        if (model_dir / name).is_file():
            return fst_output_words(model_dir / name)
    return None
