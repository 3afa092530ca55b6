"""Realtime/Legacy routing: rollout config, the routing policy, guards, emergency actions and their audit.

Entry points for the voice session manager (sync; async callers wrap them in ``core.blocking.run_blocking``):
- ``services.decide_for_session(session_id) -> Decision``: once per session start; never raises.
- ``services.record_fallback_event(session_id, reason, detail)``: before moving a live session to Legacy.
- ``guards.record_connection_result / record_fatal_upstream_error / record_session_outcome /
  record_turn_latency`` and ``services.record_realtime_spend``: the samples the guards live on (the metrics
  writer's signals feed them too, see ``receivers``).
- ``services.control_state()``: the emergency flags, and whether the hour's cost limit is passed; live sessions
  join ``emergency.CONTROL_GROUP`` and handle ``control.emergency`` messages (a consumer method
  ``control_emergency``): an emergency stop, or the cost limit (``emergency.COST_LIMIT_ACTION``).
- ``emergency.apply_action(action, actor=..., reason=..., **params)``: every manual or emergency change.
"""
