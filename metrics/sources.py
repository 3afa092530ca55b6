"""What metrics shows but does not own, registered at startup by the app that owns it.

Metrics imports none of the apps above it; they hand it what it reads from them: the effective hourly cost
limit, the fallback counts, the routing part of the session page and more Prometheus families. Until then
each source answers as if that app recorded nothing (the limit from REALTIME_COST_LIMIT_PER_HOUR).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.conf import settings
from prometheus_client.core import Metric


def _limit_from_settings() -> Decimal:
    return Decimal(str(settings.REALTIME_COST_LIMIT_PER_HOUR))


@dataclass
class Sources:
    cost_limit: Callable[[], Decimal | float] = _limit_from_settings
    session_fallbacks: Callable[[str], int] = lambda session_id: 0
    fallbacks_by_reason: Callable[[datetime, datetime], dict[str, int]] = lambda since, until: {}
    session_detail: Callable[[str], dict[str, Any]] = lambda session_id: {}
    prometheus: list[Callable[[], Iterable[Metric]]] = field(default_factory=list)

    def register(self, **sources: Any) -> None:
        """Set sources by name (``prometheus`` families are added to those already registered)."""
        for name, source in sources.items():
            if name == "prometheus":
                if source not in self.prometheus:
                    self.prometheus.append(source)
            elif name in self.__dataclass_fields__:
                setattr(self, name, source)
            else:
                raise ValueError(f"Unknown metrics source {name!r}.")


sources = Sources()
