"""The operations REST API: the auth matrix, every endpoint's shape, audited POSTs, /metrics, schemathesis."""

from __future__ import annotations

from decimal import Decimal

import pytest
import schemathesis
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.core.management import call_command
from django.test import Client
from django.utils import timezone
from hypothesis import HealthCheck, given
from hypothesis import settings as hyp_settings
from hypothesis.errors import Unsatisfiable
from prometheus_client.parser import text_string_to_metric_families

from fallback import guards
from fallback.models import AuditEntry, EmergencyState, FallbackEvent
from metrics import ledger
from metrics.models import ApiToken, SessionMetric, TurnMetric

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("reference_prices")]

API = "/api/v1/realtime/"
GETS = ["status", "metrics", "fallback-status", "cost-status", "performance-stats"]
POSTS = {"force-fallback": "force_fallback", "emergency-stop": "emergency_stop", "resume": "resume"}


@pytest.fixture
def staff():
    user = get_user_model().objects.create_user("operator", "op@example.com", "pw", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="change_rolloutconfig"))
    return user


@pytest.fixture
def token(staff, capsys):
    call_command("create_api_token", "operator")
    return capsys.readouterr().out.strip().splitlines()[-1]


def bearer(token: str) -> dict[str, str]:
    return {"HTTP_AUTHORIZATION": f"Bearer {token}"}


# --- auth matrix ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", GETS + list(POSTS))
def test_anonymous_is_refused_with_401(client, name):
    response = client.post(API + name, {"reason": "x"}, "application/json") if name in POSTS else client.get(API + name)
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_non_staff_gets_403_even_with_a_session(client):
    user = get_user_model().objects.create_user("visitor", "v@example.com", "pw")
    client.force_login(user)
    assert client.get(API + "status").status_code == 403


def test_only_staff_may_hold_a_token(capsys):
    get_user_model().objects.create_user("visitor", "v@example.com", "pw")
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="not an active staff user"):
        call_command("create_api_token", "visitor")
    with pytest.raises(CommandError, match="No user"):
        call_command("create_api_token", "nobody")


def test_token_is_stored_hashed_and_works_as_bearer(client, token):
    row = ApiToken.objects.get()
    assert token not in (row.key_hash, row.key_prefix) and row.key_prefix == token[:8]
    assert client.get(API + "status", **bearer(token)).status_code == 200
    assert ApiToken.objects.get().last_used_at is not None


def test_wrong_token_is_401(client, token):
    assert client.get(API + "status", **bearer(token + "x")).status_code == 401
    assert client.get(API + "status", HTTP_AUTHORIZATION="Bearer a b").status_code == 401


def test_demoted_user_token_is_403(client, staff, token):
    staff.is_staff = False
    staff.save()
    assert client.get(API + "status", **bearer(token)).status_code == 403


def test_staff_session_post_needs_csrf(staff):
    client = Client(enforce_csrf_checks=True)
    client.force_login(staff)
    assert client.get(API + "status").status_code == 200  # reads need no CSRF
    response = client.post(API + "force-fallback", {"reason": "drill"}, "application/json")
    assert response.status_code == 403 and "CSRF" in response.json()["detail"]
    client.get("/admin/")  # an admin page sets the CSRF cookie
    csrf = client.cookies["csrftoken"].value
    response = client.post(API + "force-fallback", {"reason": "drill"}, "application/json", HTTP_X_CSRFTOKEN=csrf)
    assert response.status_code == 200
    assert EmergencyState.load().force_fallback


def test_staff_without_the_control_permission_may_read_but_not_post(client):
    user = get_user_model().objects.create_user("viewer", "vw@example.com", "pw", is_staff=True)
    client.force_login(user)
    assert client.get(API + "status").status_code == 200
    assert client.post(API + "force-fallback", {"reason": "x"}, "application/json").status_code == 403


def test_health_check_needs_no_login_and_says_healthy_or_degraded(client, staff):
    response = client.get(API + "health-check")
    assert response.status_code == 200 and response.json()["status"] == "healthy"
    assert set(response.json()) == {"status", "ready", "checks", "upstream"}  # tests/project/test_health.py: the rest
    from fallback.emergency import apply_action

    apply_action("emergency_stop", actor="cli:test", reason="drill")
    assert client.get(API + "health-check").json()["status"] == "degraded"


# --- POSTs: validation and audit ------------------------------------------------------------------------


@pytest.mark.parametrize("body", [{}, {"reason": ""}, {"reason": "   "}, {"reason": 5}, {"reason": "x" * 501}])
def test_post_without_a_reason_is_a_clear_400(client, token, body):
    response = client.post(API + "force-fallback", body, "application/json", **bearer(token))
    assert response.status_code == 400
    assert "reason" in response.json()["detail"]
    assert not AuditEntry.objects.exists()


@pytest.mark.parametrize(("path", "action"), POSTS.items())
def test_post_goes_through_apply_action_and_is_audited_as_the_api_user(client, token, path, action):
    response = client.post(API + path, {"reason": "incident 42"}, "application/json", **bearer(token))
    assert response.status_code == 200
    body = response.json()
    assert body["action"] == action and set(body) == {
        "action",
        "audit_id",
        "config_version",
        "before",
        "after",
        "summary",
    }
    entry = AuditEntry.objects.get(pk=body["audit_id"])
    assert (entry.actor, entry.action, entry.reason) == ("api:operator", action, "incident 42")


def test_get_on_a_post_endpoint_is_405(client, token):
    assert client.get(API + "emergency-stop", **bearer(token)).status_code == 405


# --- shapes -------------------------------------------------------------------------------------------


@pytest.fixture
def recorded():
    """Two sessions with turns, a fallback, spend in the rolling hour."""
    now = timezone.now()
    SessionMetric.objects.create(
        session_id="rt-1",
        started_at=now,
        ended_at=now,
        mode="realtime",
        outcome="completed",
        turns=2,
        cost_usd=Decimal("0.05"),
        visitor_turns=3,
        reasks=1,
        corrections=1,
        seconds_to_complete=40.0,
        satisfaction=3,
    )
    SessionMetric.objects.create(
        session_id="lg-1", started_at=now, ended_at=now, mode="legacy", outcome="error", visitor_turns=2
    )
    for i, (path, ttfa, server, cost) in enumerate(
        [("realtime", 600, 8, "0.03"), ("realtime", 900, 30, "0.02"), ("legacy", 1800, 120, "0.001")]
    ):
        TurnMetric.objects.create(
            event_id=f"t{i}",
            session_id="rt-1" if path == "realtime" else "lg-1",
            occurred_at=now,
            path=path,
            ttfa_ms=ttfa,
            upstream_ms=ttfa - server,
            server_ms=server,
            cost_usd=Decimal(cost),
        )
    FallbackEvent.objects.create(session_id="rt-1", reason="LATENCY")
    guards.record_cost(Decimal("0.05"), 1e9)


def test_every_get_endpoint_shape(client, token, recorded):
    data = {name: client.get(API + name, **bearer(token)).json() for name in GETS}
    assert data["status"]["emergency"]["emergency_stop"] is False
    assert {g["name"] for g in data["status"]["guards"]} == {"cost", "error_rate", "latency", "connection"}
    assert set(data["status"]["mode_split_last_hour"]) == {"realtime", "legacy"}
    rt = data["metrics"]["paths"]["realtime"]
    assert (rt["started"], rt["completed"], rt["turns"], rt["ttfa_p50_ms"], rt["ttfa_p95_ms"]) == (1, 1, 2, 600, 900)
    assert data["metrics"]["paths"]["legacy"]["error_rate"] == 1.0
    assert (rt["success_rate"], rt["handed_off"], rt["mean_turns_to_complete"], rt["mean_seconds_to_complete"]) == (
        1.0,
        0,
        3.0,
        40.0,
    )
    assert (rt["reasks"], rt["reask_rate"], rt["corrections"], rt["rated"], rt["mean_satisfaction"]) == (
        1,
        pytest.approx(1 / 3),
        1,
        1,
        3.0,
    )
    lg = data["metrics"]["paths"]["legacy"]
    assert (lg["mean_turns_to_complete"], lg["reask_rate"], lg["rated"], lg["mean_satisfaction"]) == (None, 0, 0, None)
    assert data["metrics"]["fallbacks_by_reason"] == {"LATENCY": 1}
    assert Decimal(data["metrics"]["cost_usd"]) == Decimal("0.051")
    assert data["fallback-status"]["fallbacks_last_hour"] == {"LATENCY": 1}
    assert data["fallback-status"]["recent_fallbacks"][0]["session_id"] == "rt-1"
    cost = data["cost-status"]
    assert Decimal(cost["spend_last_hour_usd"]) == Decimal("0.05") and Decimal(cost["limit_per_hour_usd"]) == 50
    assert {p["model"] for p in cost["prices"]} >= {"gpt-realtime", "gpt-realtime-mini", "gpt-4o-mini-tts"}
    assert data["performance-stats"]["paths"]["legacy"]["ttfa_p95_ms"] == 1800
    assert (rt["server_p50_ms"], rt["server_p95_ms"], rt["upstream_p95_ms"]) == (8, 30, 870)
    assert data["performance-stats"]["paths"]["realtime"]["server_p95_ms"] == 30
    assert data["performance-stats"]["percentile_method"] == "nearest-rank"
    assert client.get(API + "metrics?window=week", **bearer(token)).json()["window"] == "week"
    assert client.get(API + "metrics?window=year", **bearer(token)).status_code == 400


# --- Prometheus -----------------------------------------------------------------------------------------


def samples(text: str) -> dict[tuple[str, tuple], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_prometheus_exposition_parses_and_equals_the_database(client, token, recorded):
    assert client.get("/metrics").status_code == 401
    response = client.get("/metrics", **bearer(token))
    assert response.status_code == 200 and response["Content-Type"].startswith("text/plain")
    got = samples(response.content.decode())
    assert got[("reception_turns_total", (("path", "realtime"),))] == TurnMetric.objects.filter(path="realtime").count()
    assert got[("reception_cost_usd_total", (("path", "realtime"),))] == pytest.approx(0.05)
    assert got[("reception_sessions_ended_total", (("mode", "legacy"), ("outcome", "error")))] == 1
    assert got[("reception_fallbacks_total", (("reason", "LATENCY"),))] == 1
    assert got[("reception_time_to_first_audio_ms_bucket", (("le", "750"), ("path", "realtime")))] == 1
    assert got[("reception_time_to_first_audio_ms_count", (("path", "realtime"),))] == 2
    assert got[("reception_server_added_ms_bucket", (("le", "10"), ("path", "realtime")))] == 1
    assert got[("reception_server_added_ms_sum", (("path", "realtime"),))] == 38
    assert got[("reception_upstream_first_audio_ms_bucket", (("le", "750"), ("path", "realtime")))] == 1
    assert got[("reception_upstream_first_audio_ms_count", (("path", "legacy"),))] == 1
    assert got[("reception_realtime_spend_last_hour_usd", ())] == pytest.approx(float(ledger.spend_last_hour()))
    assert got[("reception_guard_open", (("guard", "cost"),))] == 0


def test_prometheus_scrape_token(client, settings, recorded):
    settings.METRICS_SCRAPE_TOKEN = "scrape-secret"
    assert client.get("/metrics", **bearer("scrape-secret")).status_code == 200
    assert client.get("/metrics", **bearer("wrong")).status_code == 401
    user = get_user_model().objects.create_user("visitor", "v@example.com", "pw")
    client.force_login(user)
    assert client.get("/metrics").status_code == 403


def test_two_server_processes_would_report_the_same_totals(client, token, recorded):
    # Each scrape reads the shared database, so any process (here: two separate clients) returns the same text.
    first = client.get("/metrics", **bearer(token)).content
    second = Client().get("/metrics", **bearer(token)).content

    def totals(text: str) -> dict:  # process_* and python_gc_* describe the answering process: not shared
        return {key: value for key, value in samples(text).items() if not key[0].startswith(("process_", "python_gc_"))}

    assert totals(first.decode()) == totals(second.decode())


# --- schemathesis ---------------------------------------------------------------------------------------


@pytest.fixture
def connection_kept_across_requests():
    """Calling the WSGI app directly fires request_finished, which closes the test's database connection;
    Django's own test client disconnects that handler the same way."""
    from django.core.signals import request_finished, request_started
    from django.db import close_old_connections

    for signal in (request_started, request_finished):
        signal.disconnect(close_old_connections)
    yield
    for signal in (request_started, request_finished):
        signal.connect(close_old_connections)


@pytest.mark.usefixtures("connection_kept_across_requests")
@pytest.mark.parametrize("mode", [schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE])
def test_api_conforms_to_its_openapi_schema(staff, mode):
    """Every operation, valid and invalid inputs, all of schemathesis' checks (bounded examples)."""
    from django.core.wsgi import get_wsgi_application

    schema = schemathesis.openapi.from_wsgi("/api/v1/schema", get_wsgi_application())
    _, raw = ApiToken.issue(staff)
    checked = []
    for result in schema.get_all_operations():
        operation = result.ok()

        @given(case=operation.as_strategy(generation_mode=mode))
        @hyp_settings(max_examples=10, deadline=None, database=None, suppress_health_check=list(HealthCheck))
        def run(case):
            case.call_and_validate(headers={"Authorization": f"Bearer {raw}"})

        try:
            run()
        except Unsatisfiable:  # negative mode: an operation with no input (a plain GET) has nothing to negate
            assert mode == schemathesis.GenerationMode.NEGATIVE
            continue
        checked.append(operation.label)
    with_input = {f"POST /api/v1/realtime/{p}" for p in POSTS} | {f"GET /api/v1/realtime/{g}" for g in GETS}
    assert with_input <= set(checked), checked
    assert len(checked) == (9 if mode == schemathesis.GenerationMode.POSITIVE else 8)  # negative: not health-check
