"""The form of a kiosk session id, wherever one is accepted: 1 to 64 of A-Z, a-z, 0-9, '_' and '-'."""

import re

SESSION_ID_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
