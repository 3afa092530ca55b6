"""The operations REST API's metrics views (the rollout and emergency views are in ``fallback.api``).

Auth: a staff user, by ``Authorization: Bearer <token>`` or by the admin session (then POST needs CSRF).
"""

from __future__ import annotations

from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.authentication import SessionAuthentication
from rest_framework.parsers import JSONParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from . import serializers as s
from .alerts import evaluate_alerts
from .authentication import BearerTokenAuthentication, IsStaff
from .models import AlertState
from .stats import SLOW_TURN_MS, WINDOWS, summary, turn_stats, window_of

AUTH_ERRORS = {401: s.ErrorSerializer, 403: s.ErrorSerializer, 429: s.ErrorSerializer}
WINDOW_PARAM = OpenApiParameter("window", str, enum=list(WINDOWS), default="hour", description="hour, day or week")


class StaffAPIView(APIView):
    authentication_classes = [BearerTokenAuthentication, SessionAuthentication]
    permission_classes = [IsStaff]
    parser_classes = [JSONParser]

    def window(self, request: Request) -> str:
        name = request.query_params.get("window", "hour")
        window_of(name)  # raises ValueError, turned into a 400 below
        return name

    def handle_exception(self, exc: Exception) -> Response:
        if isinstance(exc, ValueError):
            return Response({"detail": str(exc)}, status=status.HTTP_400_BAD_REQUEST)
        return super().handle_exception(exc)


class MetricsView(StaffAPIView):
    @extend_schema(
        summary="Sessions by mode, latency, cost, success and error rates, fallbacks",
        parameters=[WINDOW_PARAM],
        responses={200: s.MetricsSerializer, 400: s.ErrorSerializer, **AUTH_ERRORS},
    )
    def get(self, request: Request) -> Response:
        window = self.window(request)
        evaluate_alerts()
        data = {**summary(window), "alerts": AlertState.objects.all()}
        return Response(s.MetricsSerializer(data).data)


class PerformanceStatsView(StaffAPIView):
    @extend_schema(
        summary="Latency percentiles per voice path",
        parameters=[WINDOW_PARAM],
        responses={200: s.PerformanceSerializer, 400: s.ErrorSerializer, **AUTH_ERRORS},
    )
    def get(self, request: Request) -> Response:
        window = self.window(request)
        now = timezone.now()
        data = {
            "window": window,
            "percentile_method": "nearest-rank",
            "slow_turn_ms": SLOW_TURN_MS,
            "paths": turn_stats(now - window_of(window), now),
        }
        return Response(s.PerformanceSerializer(data).data)
