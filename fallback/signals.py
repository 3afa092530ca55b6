"""What the fallback app announces inside itself, so a module can react without being imported by the sender."""

from django.dispatch import Signal

guard_tripped = Signal()  # name, now: a guard has just opened (sent by the one process whose UPDATE opened it)
