"""Response and request shapes of the REST API's rollout views (they are the OpenAPI schema, so keep them exact)."""

from __future__ import annotations

from django.core.validators import RegexValidator
from rest_framework import serializers

from metrics.serializers import MONEY


class StrictCharField(serializers.CharField):
    """A string and only a string (DRF's CharField would also take a number or a boolean)."""

    def to_internal_value(self, data: object) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


# Not blank, no NUL: at least one character outside an explicit whitespace class (the same in Python and
# in the ECMA regex of the schema, unlike \s, so what the schema accepts the server accepts).
NOT_BLANK = r"^[^\x00]*[^\x00-\x20\x7f-\xa0\u1680\u2000-\u200b\u2028\u2029\u202f\u205f\u3000\ufeff][^\x00]*$"


class ReasonSerializer(serializers.Serializer):
    reason = StrictCharField(
        max_length=500,
        trim_whitespace=False,
        validators=[RegexValidator(NOT_BLANK, "The reason cannot be blank.")],
        help_text="Why (required; stored in the audit trail).",
    )


class ActionResultSerializer(serializers.Serializer):
    action = serializers.CharField()
    audit_id = serializers.IntegerField()
    config_version = serializers.IntegerField()
    before = serializers.DictField()
    after = serializers.DictField()
    summary = serializers.CharField()


class GuardSerializer(serializers.Serializer):
    name = serializers.CharField()
    state = serializers.CharField()
    last_reason = serializers.CharField(allow_blank=True)
    retry_at = serializers.DateTimeField(allow_null=True)


class EmergencySerializer(serializers.Serializer):
    force_fallback = serializers.BooleanField()
    emergency_stop = serializers.BooleanField()
    reason = serializers.CharField(allow_blank=True)
    actor = serializers.CharField(allow_blank=True)
    since = serializers.DateTimeField(allow_null=True)


class ModeSplitSerializer(serializers.Serializer):
    realtime = serializers.IntegerField()
    legacy = serializers.IntegerField()


class StatusSerializer(serializers.Serializer):
    enabled = serializers.BooleanField()
    disabled_by_environment = serializers.BooleanField(
        help_text="FEATURE_REALTIME_MODE_ENABLED=false in the environment holds Realtime off whatever the admin says."
    )
    rollout_percentage = serializers.FloatField()
    stage = serializers.CharField(allow_blank=True)
    config_version = serializers.IntegerField()
    realtime_model = serializers.CharField()
    mode_split_last_hour = ModeSplitSerializer()
    emergency = EmergencySerializer()
    guards = GuardSerializer(many=True)


class RecentFallbackSerializer(serializers.Serializer):
    session_id = serializers.CharField()
    reason = serializers.CharField()
    detail = serializers.CharField(allow_blank=True)
    created_at = serializers.DateTimeField()


class FallbackStatusSerializer(serializers.Serializer):
    emergency = EmergencySerializer()
    guards = GuardSerializer(many=True)
    fallbacks_last_hour = serializers.DictField(child=serializers.IntegerField())
    recent_fallbacks = RecentFallbackSerializer(many=True)


class PriceSerializer(serializers.Serializer):
    model = serializers.CharField()
    effective_from = serializers.DateTimeField()
    text_input = serializers.DecimalField(**MONEY)
    cached_text_input = serializers.DecimalField(**MONEY)
    audio_input = serializers.DecimalField(**MONEY)
    cached_audio_input = serializers.DecimalField(**MONEY)
    text_output = serializers.DecimalField(**MONEY)
    audio_output = serializers.DecimalField(**MONEY)
    audio_input_per_minute = serializers.DecimalField(**MONEY)
    audio_output_per_minute = serializers.DecimalField(**MONEY)


class CostStatusSerializer(serializers.Serializer):
    spend_last_hour_usd = serializers.DecimalField(**MONEY)
    reserved_usd = serializers.DecimalField(**MONEY)
    committed_usd = serializers.DecimalField(**MONEY)
    open_reservations = serializers.IntegerField()
    limit_per_hour_usd = serializers.DecimalField(**MONEY)
    remaining_usd = serializers.DecimalField(**MONEY)
    alert_threshold_usd = serializers.DecimalField(**MONEY)
    burn_rate_usd_per_minute = serializers.DecimalField(**MONEY)
    projected_next_hour_usd = serializers.DecimalField(**MONEY)
    projected_this_hour_usd = serializers.DecimalField(**MONEY)
    cost_guard_state = serializers.CharField()
    alert_active = serializers.BooleanField()
    prices = PriceSerializer(many=True)
