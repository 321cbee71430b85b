"""Transcripts and quality checks of recorded calls (docs/quality.md).

:mod:`ivr.quality.rules` scores a transcript by a queue's rules (pure functions);
:mod:`ivr.quality.transcriber` is the ``ivr transcriber`` role (Vosk, ffmpeg); the state lives in
Redis through :mod:`ivr.queues.quality`, the API in :mod:`ivr.cti.quality`.
"""
