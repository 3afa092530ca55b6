"""Production settings and security headers: deploy checks, the required secret key, CSP, Permissions-Policy."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import secrets
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import django
import pytest
from django.conf import settings as django_settings
from django.contrib.auth import get_user_model
from django.urls import reverse

from reception.models import KioskPairing
from tests.support.kiosk_browser import demo_server, launch_chromium
from tests.support.live_server import REPO
from voice.kiosk_auth import DEVICE_COOKIE

PRODUCTION = {
    "DJANGO_DEBUG": "false",
    "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
    "DJANGO_ALLOWED_HOSTS": "reception.example.com",
    "DJANGO_SECURE_HTTPS": "true",
}


def manage(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    """`manage.py` in a fresh process with `env` over this one's environment (None values removed)."""
    import os

    merged = {**os.environ, **env}
    merged = {key: value for key, value in merged.items() if value is not None}
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=REPO, env=merged, capture_output=True, text=True, timeout=120
    )


def test_deploy_check_is_clean_behind_a_tls_proxy():
    result = manage(PRODUCTION, "check", "--deploy", "--fail-level", "WARNING")
    assert result.returncode == 0, result.stderr
    assert "no issues" in result.stdout


def test_deploy_check_warns_without_the_https_flag():
    result = manage({**PRODUCTION, "DJANGO_SECURE_HTTPS": "false"}, "check", "--deploy", "--fail-level", "WARNING")
    assert result.returncode != 0
    for check in ("W004", "W008", "W012", "W016"):
        assert check in result.stderr


def test_https_flag_trusts_the_proxy_header_and_secures_cookies():
    script = (
        "from django.conf import settings as s; import json; print(json.dumps([s.SECURE_PROXY_SSL_HEADER, "
        "s.SECURE_SSL_REDIRECT, s.SECURE_HSTS_SECONDS, s.SESSION_COOKIE_SECURE, s.CSRF_COOKIE_SECURE]))"
    )
    result = manage(PRODUCTION, "shell", "-c", script)
    assert result.returncode == 0, result.stderr
    header, redirect, hsts, session_secure, csrf_secure = json.loads(result.stdout.strip().splitlines()[-1])
    assert header == ["HTTP_X_FORWARDED_PROTO", "https"]
    assert redirect and hsts >= 365 * 24 * 3600 and session_secure and csrf_secure


def test_server_refuses_to_start_without_a_secret_key():
    result = manage({"DJANGO_SECRET_KEY": ""}, "check")
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr and "DJANGO_SECRET_KEY is not set" in result.stderr


@pytest.mark.django_db
def test_pairing_cookie_is_secure_behind_the_tls_proxy(client, kiosk_and_key, settings):
    settings.SECURE_HTTPS = True
    _, token = KioskPairing.create_link(kiosk_and_key[0])
    # The proxy speaks HTTP to the server; the cookie is still marked Secure.
    response = client.post(reverse("voice:pair", args=[token]))
    assert response.status_code == 302
    assert response.cookies[DEVICE_COOKIE]["secure"]


def directives(response) -> dict[str, list[str]]:
    policy = response.headers["Content-Security-Policy"]
    return {part.split()[0]: part.split()[1:] for part in policy.split(";") if part.strip()}


class InlineCode(HTMLParser):
    """Collects inline scripts, <style> blocks without the request's nonce and style="" attributes."""

    def __init__(self, nonce: str | None) -> None:
        super().__init__()
        self.nonce, self.found, self._in = nonce, [], None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if "style" in attrs or any(name.startswith("on") for name in attrs):
            self.found.append(f"<{tag} {attrs}>")
        executable = tag == "script" and "src" not in attrs and attrs.get("type") != "application/json"
        if executable or (tag == "style" and (not self.nonce or attrs.get("nonce") != self.nonce)):
            self.found.append(f"<{tag} {attrs}>")


def inline_code(response) -> list[str]:
    nonces = re.findall(r"'nonce-([^']+)'", response.headers["Content-Security-Policy"])
    parser = InlineCode(nonces[0] if nonces else None)
    parser.feed(response.content.decode())
    return parser.found


@pytest.mark.django_db
def test_kiosk_page_allows_its_own_socket_and_the_microphone_only(client, kiosk_and_key):
    _, token = KioskPairing.create_link(kiosk_and_key[0])
    client.post(reverse("voice:pair", args=[token]))
    response = client.get("/kiosk/")
    assert "kiosk.js" in response.content.decode()
    policy = directives(response)
    assert policy["script-src"] == ["'self'"]
    assert policy["connect-src"] == ["'self'", "ws://testserver"]
    assert "'unsafe-inline'" not in response.headers["Content-Security-Policy"]
    assert inline_code(response) == []
    features = dict(item.split("=") for item in response.headers["Permissions-Policy"].split(", "))
    assert features.pop("microphone") == "(self)"
    assert set(features.values()) == {"()"}
    assert response.headers["Referrer-Policy"] == "same-origin"


@pytest.mark.django_db
def test_admin_pages_deny_every_browser_feature_and_run_no_inline_code(client):
    staff = get_user_model().objects.create_superuser("boss", "boss@example.com", "pw-for-tests")
    client.force_login(staff)
    pages = [
        reverse("admin:index"),
        reverse("admin:reception_visit_changelist"),
        reverse("admin:metrics_metricsdashboard_changelist"),
        reverse("admin:fallback_rolloutconfig_changelist"),
    ]
    for url in pages:
        response = client.get(url, follow=True)
        assert response.status_code == 200, url
        policy = directives(response)
        assert policy["script-src"] == ["'self'"] and policy["frame-ancestors"] == ["'none'"], url
        assert inline_code(response) == [], url
        assert "microphone=()" in response.headers["Permissions-Policy"], url
        assert "=(self)" not in response.headers["Permissions-Policy"], url


def test_admin_inline_style_hash_matches_the_installed_django():
    template = Path(django.__file__).parent / "contrib/admin/templates/admin/change_list.html"
    blocks = re.findall(r"<style>(.*?)</style>", template.read_text(), re.S)
    hashes = {f"'sha256-{base64.b64encode(hashlib.sha256(b.encode()).digest()).decode()}'" for b in blocks}
    assert hashes and hashes <= set(django_settings.CONTENT_SECURITY_POLICY["DIRECTIVES"]["style-src"])


@pytest.fixture
def kiosk_server(tmp_path):
    with demo_server(tmp_path, SPEECH_WARM_UP="false") as server:
        yield server


@pytest.mark.browser
def test_kiosk_page_works_under_its_csp_in_chromium(kiosk_server):
    """Scripts, the AudioWorklet and the socket load with no CSP violation reported by the browser."""
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        try:
            page = browser.new_page()
            console: list[str] = []
            page.on("console", lambda message: console.append(message.text))
            page.add_init_script(
                "window.__violations = [];"
                "document.addEventListener('securitypolicyviolation',"
                " (e) => window.__violations.push(e.violatedDirective + ' ' + e.blockedURI));"
            )
            page.goto(kiosk_server.pairing_url)
            page.get_by_role("button").click()
            page.wait_for_url(re.compile(r"/kiosk/$"))
            expect(page.locator("#mode-badge")).not_to_be_empty(timeout=20_000)  # the socket's session started
            expect(page.locator("#talk")).to_be_visible(timeout=20_000)  # the capture worklet is running
            assert page.locator("#mic-message").is_hidden()
            violations = page.evaluate("window.__violations")
        finally:
            browser.close()
    assert violations == []
    assert not [line for line in console if "Content Security Policy" in line], console
