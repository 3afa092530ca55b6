"""ASGI entry point: HTTP through Django, the kiosk WebSocket through Channels.

The kiosk consumer checks origins itself: browsers must come from our own host, while
programs (which send no Origin) authenticate with their kiosk key.
"""

import os

from django.core.asgi import get_asgi_application

from core.garbage import record_pauses

record_pauses()  # from the first import on: start-up's own collections are counted too

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "reception_project.settings")
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from voice.legacy import warm_up_in_background  # noqa: E402
from voice.routing import websocket_urlpatterns  # noqa: E402

warm_up_in_background()

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": URLRouter(websocket_urlpatterns),
    }
)
