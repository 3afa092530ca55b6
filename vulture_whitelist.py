"""Names vulture cannot see used (tools/dead_code.py): each is read from outside the Python it scans."""

# Set on objects a library reads: a form field's `required` (Django), onnxruntime's session options,
# the CSP override django-csp reads from a view, a model field assigned before `save(update_fields=...)`,
# the send function a Channels consumer's `send` calls.
_.required
_.intra_op_num_threads
_.inter_op_num_threads
_._csp_update
_.attempts
_.base_send  # Channels' consumers send through it (the kiosk consumer's own `__call__` sets it)

# Named in a setting (REALTIME_EMULATOR_BRAIN) and imported from that string.
build_reception_brain

# Called by the settings module (not scanned: reception_project/settings.py) to check REALTIME_VOICE at start-up.
check_realtime_voice

# The emulator is the test double of the Realtime service: tests observe it through these.
_.handshakes
_.wait_for_session

# The kiosk's rating scale: read as a whole (`Satisfaction.values`, `.choices`), never member by member.
_.UNHAPPY
_.NEUTRAL
_.HAPPY

# Periodic tasks: huey's scheduler queues them by their crontab (the consumer, `manage.py run_huey`).
rollout_autopilot_step
prune_old_metrics
purge_old_visits
close_abandoned_sessions
