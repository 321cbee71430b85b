"""The model word-list reader (ivr.speech.vocabulary) reads its table in chunks: words across chunk
boundaries, both symbol tables, and a table cut short."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from ivr.speech import vocabulary
from ivr.speech.vocabulary import VocabularyError, fst_output_words


def fst(inputs: list[str] | None, outputs: list[str]) -> bytes:
    def string(b: bytes) -> bytes:
        return struct.pack("<i", len(b)) + b

    def table(words: list[str]) -> bytes:
        body = b"".join(string(w.encode()) + struct.pack("<q", i) for i, w in enumerate(words))
        return struct.pack("<i", 2125658996) + string(b"words") + struct.pack("<qq", len(words), len(words)) + body

    flags = 3 if inputs is not None else 2
    head = (struct.pack("<i", 2125659606) + string(b"vector") + string(b"standard") + struct.pack("<ii", 2, flags)
            + struct.pack("<Qqqq", 0, 0, 1, 0))
    return head + (table(inputs) if inputs is not None else b"") + table(outputs) + b"\x00" * 16


WORDS = ["<eps>", "상담원", "연결", "Billing", "", "x" * 1024, *(f"w{i}" for i in range(300))]


@pytest.mark.parametrize("chunk", [1, 7, 64, 1 << 20])
@pytest.mark.parametrize("both", [False, True])
def test_words_across_chunk_boundaries(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chunk: int,
                                       both: bool) -> None:
    monkeypatch.setattr(vocabulary, "_CHUNK", chunk)
    path = tmp_path / "Gr.fst"
    path.write_bytes(fst(["in", "put", "only"] if both else None, WORDS))
    assert fst_output_words(path) == frozenset(w.casefold() for w in WORDS if w)


@pytest.mark.parametrize("cut", [1, 5, 13, 100])
def test_a_table_cut_short_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cut: int) -> None:
    monkeypatch.setattr(vocabulary, "_CHUNK", 16)
    path = tmp_path / "Gr.fst"
    path.write_bytes(fst(None, WORDS)[:-16 - cut])
    with pytest.raises(VocabularyError, match="ends early"):
        fst_output_words(path)


def test_a_word_longer_than_the_bound_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "Gr.fst"
    path.write_bytes(fst(None, ["ok", "y" * 1025]))
    with pytest.raises(VocabularyError, match="a string of 1025 bytes"):
        fst_output_words(path)
