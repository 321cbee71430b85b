"""Pure parts of a listening turn (``ivr.calls.ask``) and the audio hand-off (``ivr.sip.bridge.FrameSink``)."""

from __future__ import annotations

import asyncio
import threading

from ivr.calls.ask import DigitEntry, grammar_of, mask_digits, speech_answer
from ivr.dialplan.ports import Answer, Ask
from ivr.sip.bridge import FrameSink
from ivr.speech.client import RecognitionResult


def ask(**kw: object) -> Ask:
    return Ask(prompts=(), language=str(kw.pop("language", "ko")), **kw)  # type: ignore[arg-type]


def test_mask_digits_never_shows_short_entries() -> None:
    assert mask_digits("1234") == "****"
    assert mask_digits("") == ""
    assert mask_digits("12345678") == "******78"


def test_digit_entry_max_terminator() -> None:
    e = DigitEntry(ask(max_digits=3, terminator="#"))
    for k in "12":
        e.add(k)
    assert not e.done
    e.add("#")
    assert e.done and e.answer() == Answer("digits", digits="12")
    e = DigitEntry(ask(max_digits=2))
    e.add("4")
    e.add("5")
    e.add("6")
    assert e.done and e.answer().digits == "45"
    assert DigitEntry(ask()).answer() == Answer.none()


def test_grammar_adds_digit_words_only_for_spoken_digits() -> None:
    assert grammar_of(ask(phrases=("요금 문의",))) == ["요금 문의"]
    words = grammar_of(ask(spoken_digits=True))
    assert "삼" in words and "일" in words
    assert grammar_of(ask(language="fr", spoken_digits=True)) == []


def test_speech_answer_maps_phrase_digits_and_no_match() -> None:
    menu = ask(phrases=("요금 문의", "상담원 연결"))
    hit = speech_answer(RecognitionResult("상담원 연결", 0.9, "상담원 연결", "speech"), menu)
    assert hit == Answer("speech", phrase="상담원 연결", text="상담원 연결", confidence=0.9)
    miss = speech_answer(RecognitionResult("연결 요금", 1.0, None, "speech"), menu)
    assert miss is not None and miss.kind == "speech" and miss.phrase == "" and miss.confidence == 1.0
    assert speech_answer(RecognitionResult("", 0.0, None, "no_input"), menu) is None
    digits = speech_answer(RecognitionResult("일 이 삼", 0.8, None, "speech"), ask(spoken_digits=True, max_digits=2))
    assert digits == Answer("speech", digits="12", text="일 이 삼", confidence=0.8)


async def test_frame_sink_hands_frames_over_bounded_and_stops_on_close() -> None:
    sink = FrameSink(asyncio.get_running_loop(), max_frames=5)
    frame = bytes(320)

    def clock() -> None:  # another thread, like the media clock
        for _ in range(8):
            sink.push(frame)

    t = threading.Thread(target=clock)
    t.start()
    t.join()
    chunks = sink.chunks()
    first = await anext(chunks)
    assert first == frame * 5 and sink.dropped == 3 and sink.frame_bytes == 320
    sink.push(frame)
    assert await anext(chunks) == frame
    sink.close()
    sink.push(frame)
    assert sink.frames == 6
    await chunks.aclose()  # type: ignore[attr-defined]
