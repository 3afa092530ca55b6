"""Seed the price table with the reference prices (shared/reference/realtime-protocol.md §9.3 and §9.4)."""

from datetime import UTC, datetime
from decimal import Decimal

from django.db import migrations

SOURCE = "realtime-protocol.md §9 (genai-prices snapshot 2026-08)"
EFFECTIVE_FROM = datetime(2025, 1, 1, tzinfo=UTC)
# model: text in, cached text in, audio in, cached audio in, text out, audio out (USD / 1M tokens),
# audio in per minute, audio out per minute (USD)
PRICES = {
    "gpt-realtime": ("4.00", "0.40", "32.00", "0.40", "16.00", "64.00", "0", "0"),
    "gpt-realtime-mini": ("0.60", "0.06", "10.00", "0.30", "2.40", "20.00", "0", "0"),
    "gpt-4o-mini-transcribe": ("1.25", "0", "3.00", "0", "5.00", "0", "0.003", "0"),
    "whisper-1": ("0", "0", "0", "0", "0", "0", "0.006", "0"),
    "gpt-4o-mini": ("0.15", "0.075", "0", "0", "0.60", "0", "0", "0"),
    "gpt-4o-mini-tts": ("0.60", "0", "0", "0", "0", "12.00", "0", "0.015"),
}
FIELDS = (
    "text_input",
    "cached_text_input",
    "audio_input",
    "cached_audio_input",
    "text_output",
    "audio_output",
    "audio_input_per_minute",
    "audio_output_per_minute",
)


def seed(apps, schema_editor):
    model_price = apps.get_model("metrics", "ModelPrice")
    for model, values in PRICES.items():
        model_price.objects.get_or_create(
            model=model,
            effective_from=EFFECTIVE_FROM,
            defaults={
                **{f: Decimal(v) for f, v in zip(FIELDS, values, strict=True)},
                "note": SOURCE,
                "created_by": "migration",
            },
        )


def unseed(apps, schema_editor):
    apps.get_model("metrics", "ModelPrice").objects.filter(created_by="migration").delete()


class Migration(migrations.Migration):
    dependencies = [("metrics", "0001_initial")]
    operations = [migrations.RunPython(seed, unseed)]
