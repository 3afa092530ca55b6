"""Admin login lockout (django-axes): repeated wrong passwords lock a user name from an address.

Axes watches logins made through a request (the admin's login form). A call to `authenticate()` without a
request (a test client's `login()`, a script) is no HTTP login attempt: it is passed on to the next backend.
An operator unlocks with `manage.py axes_reset` (everyone) or `manage.py axes_reset_username NAME`.
"""

from __future__ import annotations

from axes.backends import AxesStandaloneBackend


class LoginLockoutBackend(AxesStandaloneBackend):
    """Axes' check for requests; without a request there is nothing to count, so it steps aside."""

    def authenticate(self, request, username=None, password=None, **kwargs):
        if request is None:
            return None
        return super().authenticate(request, username=username, password=password, **kwargs)
