"""Pure parts of a listening turn (``ivr.calls.ask``) and the audio hand-off (``ivr.sip.bridge.FrameSink``)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from ivr.calls.ask import DigitEntry, grammar_of, mask_digits, run_ask, speech_answer
from ivr.dialplan.ports import Answer, Ask
from ivr.sip.bridge import FrameSink
from ivr.sip.events import Dtmf
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


def test_speech_answer_carries_the_agreement_and_prefers_the_recognisers_digits() -> None:
    menu = ask(phrases=("요금 문의",))
    hit = speech_answer(RecognitionResult("요금 문의", 1.0, "요금 문의", "speech", agreement=0.375, decodes=8), menu)
    assert hit is not None and (hit.agreement, hit.decodes, hit.phrase) == (0.375, 8, "요금 문의")
    # the recogniser's digit string (its decodes voted on it) wins over reading the words again
    got = speech_answer(RecognitionResult("일 이 삼 사", 0.9, None, "speech", agreement=0.75, decodes=8,
                                          digits="1284"), ask(spoken_digits=True, max_digits=8))
    assert got == Answer("speech", digits="1284", text="일 이 삼 사", confidence=0.9, agreement=0.75, decodes=8)


def test_a_final_without_the_new_fields_reads_as_one_decode() -> None:
    old = RecognitionResult.from_message({"type": "final", "text": "네", "confidence": 1, "phrase": "네",
                                          "reason": "speech"})
    assert (old.agreement, old.decodes, old.digits) == (1.0, 1, None)
    new = RecognitionResult.from_message({"type": "final", "text": "일 이", "confidence": 0.5, "phrase": None,
                                          "reason": "speech", "agreement": 0.625, "decodes": 8, "digits": "12"})
    assert (new.agreement, new.decodes, new.digits) == (0.625, 8, "12")


# --- one turn on a fake leg: keys replace speech ---------------------------------------------------
class FakeSink:
    frames, dropped, frame_bytes = 0, 0, 320

    async def chunks(self) -> AsyncIterator[bytes]:
        await asyncio.Event().wait()   # audio never matters here
        yield b""


class FakeLeg:
    leg_id = "leg-1"

    def __init__(self) -> None:
        loop = asyncio.get_running_loop()
        self.ended: asyncio.Future[Any] = loop.create_future()
        self.digits: asyncio.Queue[Dtmf] = asyncio.Queue()
        self.playing: list[asyncio.Future[None]] = []
        self.listens = 0
        self.stopped_listens = 0

    @property
    def is_ended(self) -> bool:
        return self.ended.done()

    async def start_playback(self, path: str) -> tuple[int, asyncio.Future[None]]:
        self.playing.append(asyncio.get_running_loop().create_future())  # a prompt that plays until stopped
        return len(self.playing), self.playing[-1]

    async def stop_playback(self, player_id: int) -> None:
        pass

    async def start_listen(self) -> tuple[int, FakeSink]:
        self.listens += 1
        return self.listens, FakeSink()

    async def stop_listen(self, tap_id: int, sink: FakeSink) -> None:
        self.stopped_listens += 1

    def key(self, digit: str) -> None:
        self.digits.put_nowait(Dtmf(self.leg_id, digit, "rfc2833"))


class FakeSpeech:
    """Hears words (a partial) at once, then the final only when told."""

    def __init__(self) -> None:
        self.final: asyncio.Future[RecognitionResult] | None = None

    async def recognize(self, chunks: AsyncIterator[bytes], *, on_partial: Callable[[str], None] | None = None,
                        **kw: Any) -> RecognitionResult:
        self.final = asyncio.get_running_loop().create_future()
        if on_partial is not None:
            on_partial("")     # heard something, not yet words of the grammar: no barge-in
        return await self.final


@pytest.mark.timeout(10)
async def test_a_key_during_the_listen_ends_speech_and_the_turn_takes_keys() -> None:
    leg, speech = FakeLeg(), FakeSpeech()
    turn = asyncio.ensure_future(run_ask(leg, ask(spoken_digits=True, max_digits=4, timeout_s=5, inter_digit_s=2),
                                         ["prompt.wav"], speech, sample_rate=8000))  # type: ignore[arg-type]
    for _ in range(100):   # bounded: until the listen is up and the prompt plays
        await asyncio.sleep(0)
        if speech.final is not None and leg.playing:
            break
    assert leg.listens == 1 and speech.final is not None
    leg.key("1")           # during the prompt, while the recogniser hears the caller
    for _ in range(100):
        await asyncio.sleep(0)
        if leg.stopped_listens:
            break
    assert leg.stopped_listens == 1 and speech.final.cancelled()   # the key ended the recognition
    for key in "234":
        leg.key(key)
    answer = await turn
    assert answer == Answer("digits", digits="1234")
    assert leg.listens == 1, "once a key is in, the turn does not listen again"


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
