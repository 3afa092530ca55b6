"""OpenAI speech clients against a mock transport: request shape, no key in errors."""

from __future__ import annotations

import json

import httpx
import pytest

from speech.engines import get_speech_engines
from speech.stt import OpenAISTT, SpeechEngineError
from speech.tts import OpenAITTS, split_sentences

KEY = "sk-test-SECRET-123"


def test_openai_stt_posts_multipart_wav():
    seen = {}

    def handler(request: httpx.Request) -> httpx.Response:
        seen["url"] = str(request.url)
        seen["auth"] = request.headers["authorization"]
        seen["body"] = request.read()
        return httpx.Response(200, json={"text": " 山田です "})

    stt = OpenAISTT(
        KEY, base_url="https://example.test/v1/", client=httpx.Client(transport=httpx.MockTransport(handler))
    )
    tr = stt.transcribe(bytes(32000), "ja-JP", "山田、鈴木")
    assert tr.text == "山田です" and tr.language == "ja" and tr.duration == 1.0
    assert seen["url"] == "https://example.test/v1/audio/transcriptions"
    assert seen["auth"] == f"Bearer {KEY}"
    body = seen["body"]
    assert b'name="model"\r\n\r\ngpt-4o-mini-transcribe' in body
    assert b'name="language"\r\n\r\nja' in body
    assert b"RIFF" in body and b'filename="utterance.wav"' in body
    assert KEY not in repr(stt)


def test_openai_errors_never_carry_the_key_or_body():
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            401,
            json={
                "error": {
                    "message": f"Incorrect API key provided: {KEY}",
                    "type": "invalid_request_error",
                    "code": "invalid_api_key",
                }
            },
        )

    client = httpx.Client(transport=httpx.MockTransport(handler))
    for call in (
        lambda: OpenAISTT(KEY, client=client).transcribe(bytes(3200), "en"),
        lambda: OpenAITTS(KEY, client=client).synthesize("Hello", "en"),
    ):
        with pytest.raises(SpeechEngineError) as info:
            call()
        assert "401" in str(info.value) and "invalid_api_key" in str(info.value)
        assert KEY not in str(info.value) and "Incorrect" not in str(info.value)


def test_openai_tts_requests_pcm():
    seen = {}

    def handler(request: httpx.Request) -> httpx.Response:
        seen.update(json.loads(request.read()))
        return httpx.Response(200, content=b"\x01\x00\x02\x00\x03")  # odd length gets trimmed

    tts = OpenAITTS(KEY, client=httpx.Client(transport=httpx.MockTransport(handler)))
    assert tts.synthesize("こんにちは。", "ja") == b"\x01\x00\x02\x00"
    assert seen == {"model": "gpt-4o-mini-tts", "input": "こんにちは。", "voice": "alloy", "response_format": "pcm"}
    assert tts.synthesize("  ", "ja") == b""


def test_openai_engines_need_a_key_and_are_cached():
    with pytest.raises(ValueError):
        get_speech_engines("openai")
    with pytest.raises(ValueError):
        get_speech_engines("cloud")
    a = get_speech_engines("openai", openai_api_key=KEY)
    assert a is get_speech_engines("openai", openai_api_key=KEY)
    assert isinstance(a.stt, OpenAISTT) and isinstance(a.tts, OpenAITTS)
    assert KEY not in repr(a)


@pytest.mark.parametrize(
    ("text", "language", "expected"),
    [
        ("こんにちは。鈴木です！ご用件は？", "ja", ["こんにちは。", "鈴木です！", "ご用件は？"]),
        ("「はい。」と言いました。次", "ja", ["「はい。」", "と言いました。", "次"]),
        (
            "Hello Mr. Suzuki. It is 3.5 p.m. now! Really? Yes",
            "en",
            ["Hello Mr. Suzuki.", "It is 3.5 p.m. now!", "Really?", "Yes"],
        ),
        ("", "en", []),
    ],
)
def test_split_sentences(text, language, expected):
    assert split_sentences(text, language) == expected
