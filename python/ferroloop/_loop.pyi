# Types of the pure-Python part of the loop. At run time Loop is also a
# subclass of the native LoopCore; its public API is asyncio's
# AbstractEventLoop, which typeshed describes in full.
import asyncio

class Loop(asyncio.AbstractEventLoop):
    def __init__(self) -> None: ...

def new_event_loop() -> Loop: ...
