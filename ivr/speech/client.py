"""Client of the speech service: stream one utterance's audio, get one :class:`RecognitionResult`.

Wire protocol (``GET /recognize``, WebSocket; one session = one listening period):

1. client -> server, text: ``{"sample_rate": 8000|16000, "phrases": [...] | null,
   "max_speech_ms": 8000, "no_input_ms": 5000}`` and optionally ``"end_quiet_ms"``, ``"decodes": 1..9``
   (how many decodes vote; default the service's ``speech.decodes``), ``"stable_ms"``
2. client -> server, binary: 16-bit little-endian mono PCM at ``sample_rate``, any chunk size;
   optionally text ``{"eof": true}`` when the audio ends.
3. server -> client, text: any number of ``{"type": "partial", "text": ...}``, then exactly one
   ``{"type": "final", "text", "confidence", "phrase", "reason", "agreement", "decodes", "digits",
   "digit_agreement"}`` (see :class:`RecognitionResult`) or one
   ``{"type": "error", "code", "message"}``; then the server closes.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal, cast, get_args

import aiohttp

from ivr.core.errors import BadRequest, Unavailable

Reason = Literal["speech", "no_input", "max_speech", "eof"]
REASONS: frozenset[str] = frozenset(get_args(Reason))
SAMPLE_RATES = (8000, 16000)


@dataclass(frozen=True, slots=True)
class RecognitionResult:
    """What the caller said in one listening period.

    ``text`` is the recognised words without garbage tokens ("" for silence or out-of-grammar
    speech); ``confidence`` the mean word confidence (0.0 when no word); ``phrase`` the configured
    menu phrase the text matched, if any; ``reason`` why listening ended.

    The service decodes an utterance ``decodes`` times (at small time shifts) and the decodes vote:
    ``agreement`` is the fraction of them that gave this ``phrase`` (this ``digits`` when there are
    digits); 1.0 when one decode ran, 0.0 when there is neither phrase nor digits. ``digits`` is the
    number when the grammar holds the digit words of a language and the whole utterance was
    digits; ``digit_agreement`` the fraction of decodes that agree on each of its digits.
    """

    text: str
    confidence: float
    phrase: str | None
    reason: Reason
    agreement: float = 1.0
    decodes: int = 1
    digits: str | None = None
    digit_agreement: tuple[float, ...] = ()

    def to_message(self) -> dict[str, Any]:
        return {"type": "final", "text": self.text, "confidence": round(self.confidence, 4),
                "phrase": self.phrase, "reason": self.reason, "agreement": round(self.agreement, 4),
                "decodes": self.decodes, "digits": self.digits,
                "digit_agreement": [round(a, 4) for a in self.digit_agreement]}

    @classmethod
    def from_message(cls, msg: dict[str, Any]) -> RecognitionResult:
        """The result of a final message; fields a service before voting did not send take their
        defaults (one decode: agreement 1.0 with a phrase, 0.0 without)."""
        reason = msg.get("reason")
        if reason not in REASONS:
            raise ValueError(f"unknown reason {reason!r}")
        phrase = msg.get("phrase")
        digits = msg.get("digits")
        if digits is not None and not (isinstance(digits, str) and digits.isdigit() and digits.isascii()):
            raise ValueError(f"digits must be a string of 0-9, not {digits!r}")
        agreement = msg.get("agreement")
        if agreement is None:
            agreement = 1.0 if phrase is not None or digits is not None else 0.0
        per_digit = msg.get("digit_agreement") or []
        if not isinstance(per_digit, list):
            raise ValueError("digit_agreement must be a list")
        return cls(text=str(msg.get("text") or ""), confidence=float(msg.get("confidence") or 0.0),
                   phrase=None if phrase is None else str(phrase), reason=cast(Reason, reason),
                   agreement=min(1.0, max(0.0, float(agreement))), decodes=max(1, int(msg.get("decodes") or 1)),
                   digits=digits, digit_agreement=tuple(float(a) for a in per_digit))


class SpeechClient:
    """Talks to one speech service. Reuse one instance per process; ``close()`` it (or ``async with``)."""

    def __init__(self, host: str, port: int, *, connect_timeout_s: float = 3.0) -> None:
        self.url = f"http://{host}:{port}/recognize"
        self._connect_timeout_s = connect_timeout_s
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> SpeechClient:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=self._connect_timeout_s))
        return self._session

    async def recognize(
        self,
        audio_chunks: AsyncIterator[bytes],
        *,
        sample_rate: int = 8000,
        phrases: Sequence[str] | None = None,
        no_input_ms: int = 5000,
        max_speech_ms: int = 8000,
        end_quiet_ms: int | None = None,
        decodes: int | None = None,
        stable_ms: int | None = None,
        on_partial: Callable[[str], None] | None = None,
    ) -> RecognitionResult:
        """Stream ``audio_chunks`` until the service returns its final result.

        Stops consuming ``audio_chunks`` as soon as the result is in, and closes it (``aclose``)
        if it is an async generator.
        When the iterator ends first, tells the service so and gets the result for the audio sent.
        ``on_partial`` gets partial text as the caller speaks (barge-in; the text may be "" while
        the words are not menu words yet). ``end_quiet_ms``: quiet after a whole phrase that ends
        the utterance (the service's default, 300 ms, suits menu phrases; digit strings need more).
        ``decodes``: how many decodes of the utterance vote (1..9; None: the service's default).
        ``stable_ms``: a whole phrase unchanged this long ends the utterance on a noisy line
        (None: the service's default, 500 ms).
        Raises ``BadRequest(code="speech.bad_request")`` when the
        service refuses the request, ``Unavailable`` (transient; code ``speech.unavailable``, or
        ``speech.internal`` for a service fault) when it cannot be reached, is not ready, or drops
        the session.
        """
        start: dict[str, Any] = {"sample_rate": sample_rate, "phrases": None if phrases is None else list(phrases),
                 "max_speech_ms": max_speech_ms, "no_input_ms": no_input_ms}
        if end_quiet_ms is not None:
            start["end_quiet_ms"] = end_quiet_ms
        if decodes is not None:
            start["decodes"] = decodes
        if stable_ms is not None:
            start["stable_ms"] = stable_ms
        # Audio time bounds the session on the server; this only guards against a stalled service.
        overall_s = (no_input_ms + max_speech_ms) / 1000 + 10.0
        try:
            async with asyncio.timeout(overall_s):
                ws = await self._http().ws_connect(
                    self.url, timeout=aiohttp.ClientWSTimeout(ws_close=2.0),
                    heartbeat=None, autoping=True,
                )
                async with ws:
                    await ws.send_json(start)
                    return await self._converse(ws, audio_chunks, on_partial)
        except (aiohttp.ClientError, OSError) as exc:
            raise Unavailable(f"speech service unreachable: {exc}", code="speech.unavailable",
                              url=self.url) from exc
        except TimeoutError as exc:
            raise Unavailable("speech service did not answer in time", code="speech.unavailable",
                              url=self.url) from exc

    async def _converse(self, ws: aiohttp.ClientWebSocketResponse, audio: AsyncIterator[bytes],
                        on_partial: Callable[[str], None] | None) -> RecognitionResult:
        sender = asyncio.create_task(self._send_audio(ws, audio), name="speech-client.send-audio")
        try:
            async for msg in ws:
                if msg.type != aiohttp.WSMsgType.TEXT:
                    continue
                data = json.loads(msg.data)
                kind = data.get("type")
                if kind == "partial":
                    if on_partial is not None:
                        on_partial(str(data.get("text", "")))
                elif kind == "final":
                    return RecognitionResult.from_message(data)
                elif kind == "error":
                    code = str(data.get("code", "speech.error"))
                    message = str(data.get("message", ""))
                    if code == "speech.bad_request":
                        raise BadRequest(message, code=code)
                    raise Unavailable(message, code=code)  # speech.unavailable, speech.internal
            # Closed without a result: if the audio source failed, that failure is the story.
            await asyncio.wait([sender], timeout=1.0)
            if sender.done() and not sender.cancelled() and (exc := sender.exception()) is not None:
                raise exc
            raise Unavailable("speech service closed the session without a result",
                              code="speech.unavailable", close_code=ws.close_code)
        finally:
            sender.cancel()
            await asyncio.wait([sender])  # never swallows a cancellation of this task
            if not sender.cancelled():
                sender.exception()  # raised above, or moot once the result is in

    @staticmethod
    async def _send_audio(ws: aiohttp.ClientWebSocketResponse, audio: AsyncIterator[bytes]) -> None:
        try:
            async for chunk in audio:
                if ws.closed:
                    return
                if chunk:
                    await ws.send_bytes(chunk)
            if not ws.closed:
                await ws.send_json({"eof": True})
        except ConnectionResetError:  # the server finished and closed while we were sending
            return
        except Exception:
            await ws.close()  # wakes the reader, which then raises this task's exception
            raise
        finally:
            # Done with the source (normally, or cancelled on the final): let it release what it
            # holds now, not when it is garbage-collected.
            aclose = getattr(audio, "aclose", None)
            if aclose is not None:
                await aclose()
