"""The load test's stand-in upstream: its cheap VAD hears the kiosks' spoken lines and not their stamped silence."""

from __future__ import annotations

import itertools

from tests.load_test_realtime import SILENCE, rendered_lines
from tests.support.load_standin import ScriptBrain, is_speech
from tests.support.load_upstream import FRAME_BYTES, stamp

SILENCE_ENDING_A_TURN = 10  # 20 ms windows: the server VAD's default silence_duration_ms of 200


def test_stamped_silence_is_no_speech_wherever_the_vad_windows_fall():
    stream = b"".join(stamp(SILENCE, utterance) for utterance in (1, 2, 3, 3))
    windows = [stream[offset : offset + FRAME_BYTES] for offset in range(0, 3 * FRAME_BYTES + 1, 2)]
    assert ScriptBrain().speech_detector() is is_speech
    assert not any(is_speech(window) for window in windows)
    assert is_speech(stamp(b"\x00\x20\x00\xe0" * (FRAME_BYTES // 4)))  # relay_capacity.py's square wave


def test_each_spoken_line_is_speech_from_its_first_sound_to_its_last_without_a_pause_that_ends_the_turn():
    for number, frames in enumerate(rendered_lines(), 1):
        heard = [is_speech(stamp(frame, number)) for frame in frames]
        first, last = heard.index(True), len(heard) - heard[::-1].index(True)
        pauses = [len(list(run)) for speaking, run in itertools.groupby(heard[first:last]) if not speaking]
        assert last - first > 25, (number, first, last)  # over half a second of the line is heard
        assert max(pauses, default=0) < SILENCE_ENDING_A_TURN, (number, pauses)
