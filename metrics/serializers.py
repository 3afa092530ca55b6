"""Response shapes of the REST API's metrics views, and the error shape every view shares (they are the OpenAPI
schema, so keep them exact; the rollout views' shapes are in ``fallback.serializers``)."""

from __future__ import annotations

from rest_framework import serializers

MONEY = {"max_digits": 20, "decimal_places": 6}


class PerformancePathSerializer(serializers.Serializer):
    """One path's turns and timings (the performance endpoint; also part of the metrics endpoint)."""

    turns = serializers.IntegerField()
    failed_turns = serializers.IntegerField()
    ttfa_p50_ms = serializers.FloatField(allow_null=True)
    ttfa_p95_ms = serializers.FloatField(allow_null=True)
    upstream_p50_ms = serializers.FloatField(allow_null=True)
    upstream_p95_ms = serializers.FloatField(allow_null=True)
    server_p50_ms = serializers.FloatField(allow_null=True)
    server_p95_ms = serializers.FloatField(allow_null=True)
    slow_turn_rate = serializers.FloatField(allow_null=True)


class PathStatsSerializer(PerformancePathSerializer):
    """One path's sessions, rates and cost, on top of its turns and timings."""

    started = serializers.IntegerField()
    ended = serializers.IntegerField()
    completed = serializers.IntegerField()
    errors = serializers.IntegerField()
    fell_back = serializers.IntegerField()
    success_rate = serializers.FloatField(allow_null=True)
    error_rate = serializers.FloatField(allow_null=True)
    turn_error_rate = serializers.FloatField(allow_null=True)
    cost_usd = serializers.DecimalField(**MONEY)
    handed_off = serializers.IntegerField()
    mean_turns_to_complete = serializers.FloatField(allow_null=True)
    mean_seconds_to_complete = serializers.FloatField(allow_null=True)
    reasks = serializers.IntegerField()
    reask_rate = serializers.FloatField(allow_null=True)
    corrections = serializers.IntegerField()
    rated = serializers.IntegerField()
    mean_satisfaction = serializers.FloatField(allow_null=True)


class PathsSerializer(serializers.Serializer):
    realtime = PathStatsSerializer()
    legacy = PathStatsSerializer()


class AlertSerializer(serializers.Serializer):
    name = serializers.CharField()
    active = serializers.BooleanField()
    value = serializers.FloatField()
    threshold = serializers.FloatField()
    message = serializers.CharField(allow_blank=True)
    raised_at = serializers.DateTimeField(allow_null=True)


class MetricsSerializer(serializers.Serializer):
    window = serializers.ChoiceField(choices=["hour", "day", "week"])
    since = serializers.DateTimeField()
    until = serializers.DateTimeField()
    percentile_method = serializers.CharField()
    paths = PathsSerializer()
    fallbacks_by_reason = serializers.DictField(child=serializers.IntegerField())
    cost_usd = serializers.DecimalField(**MONEY)
    alerts = AlertSerializer(many=True)


class PerformancePathsSerializer(serializers.Serializer):
    realtime = PerformancePathSerializer()
    legacy = PerformancePathSerializer()


class PerformanceSerializer(serializers.Serializer):
    window = serializers.ChoiceField(choices=["hour", "day", "week"])
    percentile_method = serializers.CharField()
    slow_turn_ms = serializers.IntegerField()
    paths = PerformancePathsSerializer()


class ErrorSerializer(serializers.Serializer):
    detail = serializers.CharField()
