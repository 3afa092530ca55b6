"""Project package: settings, ASGI routing and URLs of ai-reception."""
