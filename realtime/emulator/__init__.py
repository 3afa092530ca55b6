"""A local emulator of the OpenAI Realtime GA service for offline tests, demos and fire drills."""

from __future__ import annotations

from .brain import Brain, BrainContext, CallFunction, ReceptionBrain, Reply, Say, ScriptedBrain
from .faults import Faults
from .server import EmulatorConfig, EmulatorServer
from .session import EmulatorSession

__all__ = [
    "Brain",
    "BrainContext",
    "CallFunction",
    "EmulatorConfig",
    "EmulatorServer",
    "EmulatorSession",
    "Faults",
    "ReceptionBrain",
    "Reply",
    "Say",
    "ScriptedBrain",
]
