# Types of the pure-Python part of the loop. At run time Loop is also a
# subclass of the native LoopCore; its public API is asyncio's
# AbstractEventLoop, which typeshed describes in full.
import asyncio

from ._metrics import LoopMetrics

__all__ = ("Loop", "new_event_loop")

# mypy counts AbstractEventLoop's methods as abstract here, where they are
# left to typeshed rather than restated: the class is concrete at run time.
class Loop(asyncio.AbstractEventLoop):  # type: ignore[misc]
    def __init__(self) -> None: ...
    def metrics(self) -> LoopMetrics: ...
    def reset_metrics(self) -> None: ...
    def set_metrics(self, *, callback_timing: bool) -> None: ...

def new_event_loop() -> Loop: ...
