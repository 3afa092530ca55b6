"""Metrics, cost control and the operations console (dashboard, REST API, Prometheus).

Entry points for the voice session manager (all sync, none touches the database on the caller's thread
except the admission check):
- ``collector.collector.record_session_start / record_turn / record_session_end``: enqueue only; a writer
  thread batches the rows, adds Realtime spend to the ledger, announces what the guards count
  (``signals``) and checks the alerts.
- ``cost.admit_realtime_session(session_id) -> Admission``: at Realtime admission, reserves the session's
  estimated cost against the hourly limit; ``ledger.settle_session_cost`` releases it
  (record_session_end does that in order after the session's last turn).
- ``sources``: what the apps above metrics hand it at startup (the effective cost limit, fallback counts,
  a session's routing, more Prometheus families); metrics imports none of them.
- ``cost.cost_of_realtime_usage(model, usage)``: the exact USD of one ``response.done`` usage object, and the
  price version it was priced at.
"""
