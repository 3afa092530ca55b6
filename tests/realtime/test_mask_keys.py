"""The upstream socket's masking keys: drawn from the OS's random source in blocks, and used by `websockets`."""

from __future__ import annotations

import itertools
import logging
import os
import threading

import websockets.frames
from websockets.frames import Frame, Opcode

from realtime import mask_keys
from realtime.mask_keys import BLOCK_BYTES, KEY_BYTES, MaskKeys


def counted_blocks(monkeypatch) -> list[bytes]:
    """Make `os.urandom` in `mask_keys` give numbered blocks (each 4-byte key unique), and list the blocks given."""
    given, numbers = [], itertools.count()

    def urandom(size: int) -> bytes:
        start = next(numbers) * (size // KEY_BYTES)
        block = b"".join((start + n).to_bytes(KEY_BYTES, "big") for n in range(size // KEY_BYTES))
        given.append(block)
        return block

    monkeypatch.setattr(mask_keys.os, "urandom", urandom)
    return given


def test_websockets_masks_each_frame_with_the_next_key_of_the_block(monkeypatch):
    blocks = counted_blocks(monkeypatch)
    keys = MaskKeys()
    monkeypatch.setattr(websockets.frames, "secrets", keys)
    first = Frame(Opcode.TEXT, b'{"type": "input_audio_buffer.append"}').serialize(mask=True, extensions=[])
    second = Frame(Opcode.TEXT, b"{}").serialize(mask=True, extensions=[])
    assert first[2:6] == blocks[0][:4] and second[2:6] == blocks[0][4:8]  # the key follows the 2-byte header


def test_the_app_installs_them_in_every_process_that_loads_django():
    assert isinstance(websockets.frames.secrets, MaskKeys)


def test_a_block_serves_its_keys_once_then_a_new_block_is_drawn(monkeypatch):
    blocks = counted_blocks(monkeypatch)
    keys = MaskKeys()
    drawn = [keys.token_bytes(KEY_BYTES) for _ in range(BLOCK_BYTES // KEY_BYTES + 1)]
    assert len(blocks) == 2
    assert b"".join(drawn[:-1]) == blocks[0] and drawn[-1] == blocks[1][:KEY_BYTES]


def test_other_sizes_come_straight_from_secrets(monkeypatch):
    blocks = counted_blocks(monkeypatch)
    keys = MaskKeys()
    handshake_key = keys.token_bytes(16)  # websockets' Sec-WebSocket-Key
    assert len(handshake_key) == 16 and blocks == []
    assert keys.token_hex(8) and keys.compare_digest is mask_keys.secrets.compare_digest


def test_threads_drawing_at_once_never_get_the_same_key(monkeypatch):
    counted_blocks(monkeypatch)
    keys, drawn = MaskKeys(), [[] for _ in range(4)]

    def draw(into: list) -> None:
        into.extend(keys.token_bytes(KEY_BYTES) for _ in range(3000))

    threads = [threading.Thread(target=draw, args=(into,)) for into in drawn]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    every = [key for into in drawn for key in into]
    assert len(set(every)) == len(every) == 12_000


def test_a_forked_child_draws_a_block_of_its_own():
    keys = MaskKeys()
    keys.token_bytes(KEY_BYTES)  # the parent holds a block
    read_end, write_end = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - the child reports through the pipe
        os.write(write_end, keys.token_bytes(KEY_BYTES))
        os._exit(0)
    os.close(write_end)
    in_child = os.read(read_end, KEY_BYTES)
    os.close(read_end)
    os.waitpid(child, 0)
    assert len(in_child) == KEY_BYTES and in_child != keys.token_bytes(KEY_BYTES)


def test_a_websockets_that_no_longer_uses_secrets_is_left_as_it_is(monkeypatch, caplog):
    other = object()
    monkeypatch.setattr(websockets.frames, "secrets", other)
    with caplog.at_level(logging.WARNING, logger="realtime.mask_keys"):
        mask_keys.install()
    assert websockets.frames.secrets is other
    assert "masking keys" in caplog.text
