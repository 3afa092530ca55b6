"""Voice sessions: the kiosk socket, the kiosk page and the Legacy speech path."""
