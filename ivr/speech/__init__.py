"""Offline speech for phone menus: one recognition service per host and its client.

Import :mod:`ivr.speech.server` only in the speech role (it loads Vosk); everything else uses the
client and the grammar helpers re-exported here.
"""

from ivr.speech.client import Reason, RecognitionResult, SpeechClient
from ivr.speech.grammar import build_grammar, digit_words, match_phrase, normalise, spoken_digits

__all__ = [
    "Reason",
    "RecognitionResult",
    "SpeechClient",
    "build_grammar",
    "digit_words",
    "match_phrase",
    "normalise",
    "spoken_digits",
]
