"""Run the app under uvicorn, stopping cleanly on SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import threading
from collections.abc import Callable, Iterator
from types import FrameType

import structlog
import uvicorn
from litestar import Litestar


class GracefulServer(uvicorn.Server):
    """SIGTERM is how systemd and podman stop a service: finish in-flight requests (bounded),
    run the lifespan shutdown (which unloads every model), exit 0. uvicorn re-raises a caught
    signal after its shutdown, so without this the process would die of SIGTERM and the unit
    would be marked failed."""

    stopped: tuple[int, ...] = ()
    on_stop: Callable[[], None] | None = None
    """Called on the loop at the first signal: queued requests are refused at once (503) and
    the shutdown's deadline starts, rather than after uvicorn's own grace."""

    on_reload: Callable[[], None] | None = None
    """Called on the loop at SIGHUP (``systemctl reload``): the API keys are read again."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        with super().capture_signals():
            if self.on_reload is None or threading.current_thread() is not threading.main_thread():
                yield
                return
            previous = signal.signal(signal.SIGHUP, self.handle_reload)
            try:
                yield
            finally:
                signal.signal(signal.SIGHUP, previous)

    def handle_reload(self, sig: int, frame: FrameType | None) -> None:
        if self.on_reload is not None:
            asyncio.get_event_loop().call_soon_threadsafe(self.on_reload)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self.stopped = (*self.stopped, sig)
        if self.on_stop is not None and len(self.stopped) == 1:
            asyncio.get_event_loop().call_soon_threadsafe(self.on_stop)
        super().handle_exit(sig, frame)
        if sig == signal.SIGTERM and sig in self._captured_signals:
            self._captured_signals.remove(sig)


def run(
    app: Litestar,
    *,
    host: str,
    port: int,
    grace_s: float,
    on_stop: Callable[[], None] | None = None,
    on_reload: Callable[[], None] | None = None,
) -> None:
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level="warning",
        access_log=False,  # llmux logs every request itself (request.done)
        timeout_graceful_shutdown=grace_s,  # type: ignore[arg-type]  # any number of seconds works; the annotation says int
        timeout_keep_alive=30,
    )
    server = GracefulServer(config)
    server.on_stop = on_stop
    server.on_reload = on_reload
    server.run()
    structlog.get_logger("llmux").info("server.stopped", signals=[signal.Signals(s).name for s in server.stopped])
