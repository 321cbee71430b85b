"""How often the speech model takes one menu phrase for another, by how alike the two sound.

The thresholds of ``ivr dialplan check``'s similar-phrase warning (ivr/speech/similarity.py) are
chosen with this: for pairs of phrases, from the same sound to far apart, each phrase is spoken by
espeak-ng's Korean voice at several speeds and pitches (8 kHz, as on a call), and recognised by the
installed Vosk model with a grammar of just the two phrases and the model's garbage word (as the
service builds a menu of two options). An utterance is *swapped* when the other phrase of the pair comes out.

Run: ``.venv/bin/python bench/phrase_confusion.py`` (prints JSON; about a minute on one core).
Speech synthesis is not a caller: the figures rank pairs, they are not a caller's error rates.
"""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from typing import Any

RATE = 8000
SPEEDS = (130, 170, 210)
PITCHES = (30, 50, 70)

#: (class, phrase, phrase): classes as ``check`` names them, with far pairs as the control.
PAIRS: list[tuple[str, str, str]] = [
    ("same sound", "문의", "무늬"), ("same sound", "결제", "결재"),
    ("part of", "요금", "요금 조회"), ("part of", "상담원", "상담원 연결"), ("part of", "만족", "매우 만족"),
    ("part of", "해지", "해지 신청"), ("start/end", "상담", "상담원"), ("start/end", "만족", "불만족"),
    ("1 sound", "해지", "해제"), ("1 sound", "일번", "이번"), ("1 sound", "요금", "요즘"),
    ("1 sound", "환불", "한불"), ("1 sound", "해지", "회지"),
    ("2-3 sounds", "요금", "요인"), ("2-3 sounds", "결제", "결정"), ("2-3 sounds", "일번", "삼번"),
    ("2-3 sounds", "환불", "환율"),
    ("far", "요금 문의", "상담원 연결"), ("far", "해지", "환불"), ("far", "안내", "해지"),
    ("far", "요금", "상담원"), ("far", "네", "아니요"),
]


def synth(text: str, speed: int, pitch: int) -> bytes:
    wav = subprocess.run(["espeak-ng", "-v", "ko", "-s", str(speed), "-p", str(pitch), "--stdout", text],
                         check=True, capture_output=True, timeout=30).stdout
    return subprocess.run(["ffmpeg", "-v", "error", "-i", "pipe:0", "-ar", str(RATE), "-ac", "1", "-f", "s16le",
                           "-acodec", "pcm_s16le", "pipe:1"], input=wav, check=True, capture_output=True,
                          timeout=30).stdout


def main() -> dict[str, Any]:
    import vosk

    from ivr.speech.grammar import build_grammar, match_phrase
    from ivr.speech.server import default_model_dir
    from ivr.speech.similarity import confusion, distance, sound_form
    from ivr.speech.vocabulary import model_words

    vosk.SetLogLevel(-1)
    model_dir = default_model_dir()
    model = vosk.Model(str(model_dir))
    unk = next((w for w in ("[unk]", "<UNK>", "<unk>") if model.vosk_model_find_word(w) >= 0), None)  # as the service
    words = model_words(model_dir) or frozenset()
    rows: list[dict[str, Any]] = []
    for kind, a, b in PAIRS:
        unknown = [w for w in f"{a} {b}".split() if w not in words]
        grammar = build_grammar([a, b], unk=unk)
        said = {a: 0, b: 0}
        right = swapped = other = 0
        for (spoken, heard), speed, pitch in itertools.product(((a, b), (b, a)), SPEEDS, PITCHES):
            rec = vosk.KaldiRecognizer(model, RATE, grammar)
            rec.AcceptWaveform(synth(spoken, speed, pitch))
            text = json.loads(rec.FinalResult()).get("text", "")
            got = match_phrase(text, [a, b])
            said[spoken] += 1
            right += got == spoken
            swapped += got == heard
            other += got is None
        sa, sb = sound_form(a), sound_form(b)
        rows.append({"class": kind, "a": a, "b": b, "sound_distance": distance(sa, sb),
                     "sound_ratio": round(distance(sa, sb) / max(len(sa), len(sb)), 3),
                     "check_warns": confusion(a, b) is not None, "unknown_words": unknown,
                     "utterances": sum(said.values()), "right": right, "swapped": swapped, "no_match": other})
    def total(group: list[dict[str, Any]]) -> dict[str, int]:
        return {key: sum(r[key] for r in group) for key in ("utterances", "right", "swapped", "no_match")}

    classes = dict.fromkeys(kind for kind, _, _ in PAIRS)
    return {"model": str(model_dir), "garbage_word": unk, "speeds": SPEEDS, "pitches": PITCHES,
            "by_class": {kind: total([r for r in rows if r["class"] == kind]) for kind in classes},
            "by_verdict": {"warned": total([r for r in rows if r["check_warns"]]),
                           "not_warned": total([r for r in rows if not r["check_warns"]])},
            "pairs": rows}


if __name__ == "__main__":
    json.dump(main(), sys.stdout, ensure_ascii=False, indent=2)
    print()
