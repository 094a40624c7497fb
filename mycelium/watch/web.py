"""The explorer's web server: one page, its static files, and the picture pushed as server-sent events.

Starlette (ASGI, runs on trio through anyio) served by Hypercorn's trio worker: both small and well
kept, and neither needs an event loop of its own beside the observer's. The page never polls: it opens
`/api/events` and receives the whole picture (a few kB per group) whenever it changed, at most
`PUSH_EVERY` apart. `/api/state` gives the same picture once, for scripts and curl. Every asset ships
in the package (static/), so nothing is fetched from the internet.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Callable
from functools import partial
from pathlib import Path

import trio
from hypercorn.config import Config
from hypercorn.trio import serve
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from mycelium.errors import ConfigError
from mycelium.watch.observer import Observer

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"
PUSH_EVERY = 0.5  # seconds: the page gets at most two pictures a second
KEEPALIVE = 15.0
MAX_CLIENTS = 32


def picture(observer: Observer) -> dict[str, object]:
    return {
        **observer.view.snapshot(observer.clock()),
        "observer": observer.peer_id,
        "status": observer.status,
    }


def build_app(observer: Observer) -> Starlette:
    clients = {"open": 0}

    async def index(_request: Request) -> Response:
        return FileResponse(STATIC / "index.html")

    async def state(_request: Request) -> Response:
        return JSONResponse(picture(observer))

    async def stream() -> AsyncIterator[str]:
        clients["open"] += 1
        try:
            sent = -1
            while True:
                if observer.view.version != sent:
                    sent = observer.view.version
                    yield f"event: picture\ndata: {json.dumps(picture(observer), separators=(',', ':'))}\n\n"
                    await trio.sleep(PUSH_EVERY)
                    continue  # what changed during the pause goes out now, not at the next change
                with trio.move_on_after(KEEPALIVE) as waited:
                    await observer.changed.wait()
                if waited.cancelled_caught:
                    yield ": keepalive\n\n"
        finally:
            clients["open"] -= 1

    async def events(_request: Request) -> Response:
        if clients["open"] >= MAX_CLIENTS:
            return JSONResponse({"error": f"at most {MAX_CLIENTS} pages at once"}, status_code=503)
        return StreamingResponse(
            stream(),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    return Starlette(
        routes=[
            Route("/", index),
            Route("/api/state", state),
            Route("/api/events", events),
            Mount("/static", StaticFiles(directory=STATIC), name="static"),
        ]
    )


def parse_web_address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"--web {text!r} must look like HOST:PORT, e.g. 127.0.0.1:8080")
    return host.strip("[]"), int(port)


async def serve_web(observer: Observer, address: str, on_bound: Callable[[str], None] | None = None) -> None:
    """Serve the explorer on `address` (HOST:PORT; port 0 picks one) until cancelled."""
    host, port = parse_web_address(address)
    config = Config()
    config.bind = [f"{host}:{port}"]
    config.accesslog = None
    config.errorlog = logging.getLogger("hypercorn.error")
    config.graceful_timeout = 1.0
    app = build_app(observer)
    try:
        async with trio.open_nursery() as nursery:
            binds = await nursery.start(partial(serve, app, config))
            if on_bound is not None:
                on_bound(binds[0])
    except BaseExceptionGroup as group:  # hypercorn binds inside its own nurseries
        refused, rest = group.split(OSError)
        if refused is None or rest is not None:
            raise
        error = refused.exceptions[0]
        while isinstance(error, BaseExceptionGroup):
            error = error.exceptions[0]
        raise ConfigError(f"cannot serve the explorer on {address}: {error.strerror or error}") from None
