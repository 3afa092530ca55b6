"""What the reception app announces for the apps above it to record (reception imports none of them)."""

from django.dispatch import Signal

# actor, reason, purged, older_than_days: visits were purged; sent inside the deletion's transaction, so a
# receiver that raises undoes the purge (the audit trail records each run with it).
visits_purged = Signal()
