"""``wav_finished``: a voicemail is reported only once the recorder has written its final header."""

from __future__ import annotations

import asyncio
import wave
from pathlib import Path

from ivr.calls.session import wav_finished


def write_wav(path: Path, frames: int = 800) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(b"\x01\x00" * frames)


async def test_a_closed_wav_is_finished_and_an_open_one_only_once_its_header_is_written(tmp_path: Path) -> None:
    done = tmp_path / "done.wav"
    write_wav(done)
    assert await wav_finished(done, within_s=0.1)
    # as pjmedia leaves it until the port is destroyed: sizes still 0
    pending = tmp_path / "pending.wav"
    write_wav(pending)
    raw = bytearray(pending.read_bytes())
    raw[4:8] = b"\x00\x00\x00\x00"
    pending.write_bytes(bytes(raw))
    assert not await wav_finished(pending, within_s=0.1)

    async def close_later() -> None:
        await asyncio.sleep(0.1)
        write_wav(pending)

    closer = asyncio.create_task(close_later())
    assert await wav_finished(pending, within_s=2.0)
    await closer
    assert not await wav_finished(tmp_path / "missing.wav", within_s=0.1)
