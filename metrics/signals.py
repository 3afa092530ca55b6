"""What metrics announces for the apps above it to act on (metrics imports none of them).

The writer thread sends the first three inside the batch's transaction: a receiver that raises rolls the
batch back, and it is retried whole.
"""

from django.dispatch import Signal

realtime_spend_recorded = Signal()  # now: the minute a Realtime turn's spend was added to the ledger
realtime_turn_recorded = Signal()  # ttfa_ms, at: Realtime turns' times to first audio in order, the last one's time
realtime_session_ended = Signal()  # session_id, outcome, at: a session that started on Realtime ended
price_version_added = Signal()  # actor, reason, before, after: staff saved a new version of a model's prices
