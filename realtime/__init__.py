"""The Realtime voice path: the OpenAI Realtime GA client and a protocol-faithful local emulator."""
