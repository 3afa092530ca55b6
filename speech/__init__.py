"""Speech engines of the Legacy voice path: VAD, STT and TTS behind small interfaces.

Everything here is plain, blocking Python (no asyncio, no app; only ``engines.legacy_engines`` reads
Django settings): the voice paths run the engines off the event loop (``asyncio.to_thread``). Nothing
downloads at run time: model files come from pinned PyPI packages and are sha256-verified before use.

Import the submodules directly (``from speech.engines import get_speech_engines``);
this package ``__init__`` imports nothing heavy on purpose.
"""
