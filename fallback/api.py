"""The operations REST API's rollout views: status, fallback status, the emergency actions
and the cost status (the metrics views are in ``metrics.api``; both share its auth and error handling).

POST also needs ``fallback.change_rolloutconfig``. Every change goes through ``emergency.apply_action`` with
the actor ``api:<username>``.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db.models import Count
from django.utils import timezone
from drf_spectacular.utils import extend_schema
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from metrics.alerts import evaluate_alerts
from metrics.api import AUTH_ERRORS, StaffAPIView
from metrics.cost import cost_status
from metrics.models import AlertName, AlertState, Mode, ModelPrice
from metrics.serializers import ErrorSerializer
from metrics.throttling import ControlThrottle

from . import serializers as s
from .config import load_config, load_emergency
from .emergency import Action, ActionError, apply_action
from .guards import load_guard_snapshots
from .models import FallbackEvent, GuardName, RoutingDecision
from .reporting import fallbacks_by_reason


def _emergency() -> dict[str, Any]:
    e = load_emergency()
    return {
        "force_fallback": e.force_fallback,
        "emergency_stop": e.emergency_stop,
        "reason": e.reason,
        "actor": e.actor,
        "since": e.since,
    }


def _guards() -> list[dict[str, Any]]:
    return [
        {"name": g.name, "state": g.state, "last_reason": g.last_reason, "retry_at": g.retry_at}
        for g in load_guard_snapshots().values()
    ]


class StatusView(StaffAPIView):
    @extend_schema(
        summary="Mode split, rollout, fallback and stop state", responses={200: s.StatusSerializer, **AUTH_ERRORS}
    )
    def get(self, request: Request) -> Response:
        config = load_config(load_emergency())
        since = timezone.now() - timedelta(hours=1)
        split = dict(RoutingDecision.objects.filter(decided_at__gt=since).values_list("mode").annotate(n=Count("id")))
        data = {
            "enabled": bool(config.enabled.value),
            "disabled_by_environment": config.disabled_by_environment,
            "rollout_percentage": config.percent_bp.value / 100,
            "stage": config.stage,
            "config_version": config.version,
            "realtime_model": settings.REALTIME_MODEL,
            "mode_split_last_hour": {mode: split.get(mode, 0) for mode in Mode.values},
            "emergency": _emergency(),
            "guards": _guards(),
        }
        return Response(s.StatusSerializer(data).data)


class FallbackStatusView(StaffAPIView):
    @extend_schema(
        summary="Emergency flags, guards and recent fallbacks",
        responses={200: s.FallbackStatusSerializer, **AUTH_ERRORS},
    )
    def get(self, request: Request) -> Response:
        now = timezone.now()
        data = {
            "emergency": _emergency(),
            "guards": _guards(),
            "fallbacks_last_hour": fallbacks_by_reason(now - timedelta(hours=1), now),
            "recent_fallbacks": FallbackEvent.objects.all()[:20],
        }
        return Response(s.FallbackStatusSerializer(data).data)


class ActionView(StaffAPIView):
    """POST ``{"reason": "..."}``: one audited emergency action."""

    action: Action
    throttle_classes = [*APIView.throttle_classes, ControlThrottle]

    @extend_schema(
        request=s.ReasonSerializer,
        responses={200: s.ActionResultSerializer, 400: ErrorSerializer, **AUTH_ERRORS},
    )
    def post(self, request: Request) -> Response:
        body = s.ReasonSerializer(data=request.data)
        if not body.is_valid():
            return Response({"detail": "A non-blank 'reason' (at most 500 characters) is required."}, status=400)
        try:
            result = apply_action(
                self.action, actor=f"api:{request.user.get_username()}", reason=body.validated_data["reason"]
            )
        except ActionError as exc:
            return Response({"detail": str(exc)}, status=400)
        data = {**result.__dict__, "summary": result.summary()}
        return Response(s.ActionResultSerializer(data).data)


class ForceFallbackView(ActionView):
    """Every new session goes Legacy; live sessions continue."""

    action = Action.FORCE_FALLBACK


class EmergencyStopView(ActionView):
    """Every new session goes Legacy, and live Realtime sessions move to Legacy."""

    action = Action.EMERGENCY_STOP


class ResumeView(ActionView):
    """Undo force fallback and emergency stop."""

    action = Action.RESUME


class CostStatusView(StaffAPIView):
    @extend_schema(
        summary="Rolling hour's spend, reservations, limit, projections, prices",
        responses={200: s.CostStatusSerializer, **AUTH_ERRORS},
    )
    def get(self, request: Request) -> Response:
        evaluate_alerts()
        cost = cost_status()
        guard = load_guard_snapshots()[GuardName.COST]
        data = {
            "spend_last_hour_usd": cost.spend_last_hour,
            "reserved_usd": cost.reserved,
            "committed_usd": cost.committed,
            "open_reservations": cost.open_reservations,
            "limit_per_hour_usd": cost.limit,
            "remaining_usd": cost.remaining,
            "alert_threshold_usd": settings.ALERT_COST_THRESHOLD,
            "burn_rate_usd_per_minute": cost.burn_rate_per_minute,
            "projected_next_hour_usd": cost.projected_next_hour,
            "projected_this_hour_usd": cost.projected_this_hour,
            "cost_guard_state": guard.state,
            "alert_active": AlertState.objects.filter(name=AlertName.COST, active=True).exists(),
            "prices": ModelPrice.objects.current(),
        }
        return Response(s.CostStatusSerializer(data).data)
