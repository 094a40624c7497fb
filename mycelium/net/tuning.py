"""py-libp2p 0.8.1's Yamux, changed for throughput in one place (`apply`, called by `build_host`).

Every Noise message costs a pass through py-libp2p's Python stack on both ends (encrypt, length
prefix, socket write; read, decrypt, Yamux dispatch): on one stream that, not the cipher, is the
limit. Two things made many more messages than needed, and a third made writers sleep
(benchmarks/RESULTS.md, issue 12):

- Frame size. py-libp2p sends Yamux frames of up to 64 KiB (12-byte header included), and Noise
  carries at most 65519 plaintext bytes per message, so every full frame went out as two Noise
  messages (65519 bytes and 17 bytes). We cap a frame at what one Noise message holds. (One stream,
  both ends in one process: 143 -> 173 MiB/s.)
- Window updates. py-libp2p's receiver sends a WINDOW_UPDATE after nearly every read (its
  "partial slack" and "release on read" branches), one more tiny message per data frame or so. We
  keep its go-yamux rule only: credit goes back once half the window has been consumed. (With the
  frame cap: 137 -> 189 MiB/s; nine pulls from one holder in one process 1.88 -> 1.24 s of CPU.)
  The sender never starves: it can use the whole window, and half of it is returned as soon as it
  has been read.
- Waiting for credit. A py-libp2p writer whose send window is empty polls it every 10 ms; a stream
  that reads at 1 GB/s empties a 256 KiB window in a quarter of a millisecond, so one stream
  spent most of its time asleep (128 MiB: 0.25 s of work, 4.4 s in all). Our writer sleeps on an
  event that a growing send window sets, and still gives up after py-libp2p's 5 s. (With the
  buffered reads of net/secure_io.py: one stream in benchmarks/dissemination.py 300 -> 850 MiB/s.)

Only what we send and when we wake change: Yamux lets the sender pick frame sizes and the receiver
pick when to return credit, and py-libp2p checks no frame size on receipt, so peers of any version
and implementation interoperate as before. `grant_receive_window` lets a puller give a holder more
credit at once (a window update, as go-yamux sends when it opens a stream).
"""

from __future__ import annotations

import struct

import trio
from libp2p.security.noise.io import MAX_PLAINTEXT_LENGTH
from libp2p.stream_muxer.exceptions import MuxedStreamError
from libp2p.stream_muxer.yamux import yamux

from mycelium.net import secure_io

YAMUX_FRAME_BYTES = MAX_PLAINTEXT_LENGTH  # header + payload of one Yamux frame = one Noise message
WINDOW_WAIT_LIMIT = 5.0  # py-libp2p's bound on a writer waiting for credit
CLOSED_CHECK_INTERVAL = 0.05  # a writer out of credit notices a closed stream this soon


def apply() -> None:
    """Idempotent; affects every Yamux connection of this process opened or written after it."""
    yamux.MAX_MESSAGE_SIZE = YAMUX_FRAME_BYTES
    yamux.YamuxStream._auto_tune_and_send_window_update = _batched_window_update  # type: ignore[method-assign]
    yamux.YamuxStream.send_window = property(_send_window, _set_send_window)  # type: ignore[assignment]
    yamux.YamuxStream.write = _write  # type: ignore[method-assign]
    yamux.Yamux._write_frame = _write_frame  # type: ignore[method-assign]
    secure_io.apply()


async def grant_receive_window(stream: object, window: int) -> None:
    """Let the peer send up to `window` bytes on `stream` before it waits for our window updates.

    Yamux streams start with 256 KiB of credit; a receiver may grant more at any time with a window
    update (go-yamux does so on opening). Streams of other muxers are left alone."""
    muxed = getattr(stream, "muxed_stream", stream)
    if not isinstance(muxed, yamux.YamuxStream):
        return
    async with muxed.window_lock:
        increase = window - muxed.target_recv_window
        if increase <= 0:
            return
        muxed.target_recv_window = window
        muxed.recv_window += increase
    await muxed.send_window_update(increase, skip_lock=True)


async def _batched_window_update(self: yamux.YamuxStream, *, bytes_read: int = 0) -> None:
    """py-libp2p's `_auto_tune_and_send_window_update` without its two per-read branches."""
    total_delta = 0
    async with self.window_lock:
        self._pending_recv_release += bytes_read
        buffered = len(self.conn.stream_buffers.get(self.stream_id, b""))
        threshold = self._grow_threshold()
        delta = self.target_recv_window - (self.recv_window + buffered)
        if delta >= threshold and delta > 0:
            total_delta = self._grow_to_delta(buffered) + self._apply_autotune_epoch(buffered)
            self._pending_recv_release = 0
        elif self._pending_recv_release >= threshold:
            self.recv_window += self._pending_recv_release
            total_delta = self._pending_recv_release + self._apply_autotune_epoch(buffered)
            self._pending_recv_release = 0
    if total_delta > 0:
        await self.send_window_update(total_delta, skip_lock=True)


def _send_window(self: yamux.YamuxStream) -> int:
    return self.__dict__.get("_send_window", 0)


def _set_send_window(self: yamux.YamuxStream, value: int) -> None:
    """Every change of a stream's send credit goes through here: credit that grows wakes its writer."""
    grew = value > self.__dict__.get("_send_window", 0)
    self.__dict__["_send_window"] = value
    if grew and (opened := self.__dict__.get("_window_opened")) is not None:
        opened.set()


async def _write(self: yamux.YamuxStream, data: bytes) -> None:
    """py-libp2p's `YamuxStream.write`, except that a writer out of credit sleeps until a window
    update arrives (py-libp2p polls every 10 ms, an age at loopback speeds) and that each frame is
    built with one copy of its payload. The same errors, the same 5 s bound on a closed window."""
    if self.send_closed:
        raise MuxedStreamError("Stream is closed for sending")
    payload = memoryview(data)
    sent = 0
    while sent < len(payload):
        async with self.rw_lock.write_lock():
            if self.send_closed:
                raise MuxedStreamError("Stream is closed for sending")
            async with self.window_lock:
                if self.closed:
                    raise MuxedStreamError("Stream is closed")
                size = min(self.send_window, yamux.MAX_MESSAGE_SIZE - yamux.HEADER_SIZE, len(payload) - sent)
                if size > 0:
                    self.send_window -= size
        if size <= 0:
            self._zero_window_waits += 1
            await _wait_for_credit(self)
            continue
        header = struct.pack(yamux.YAMUX_HEADER_FORMAT, 0, yamux.TYPE_DATA, 0, self.stream_id, size)
        await self.conn._write_frame(header + payload[sent : sent + size])  # noqa: SLF001
        sent += size


async def _wait_for_credit(stream: yamux.YamuxStream) -> None:
    with trio.move_on_after(WINDOW_WAIT_LIMIT) as limit:
        while stream.send_window <= 0 and not stream.closed:
            opened = stream.__dict__.get("_window_opened")
            if opened is None or opened.is_set():  # writers waiting at once share one event
                opened = stream.__dict__["_window_opened"] = trio.Event()
            with trio.move_on_after(CLOSED_CHECK_INTERVAL):
                await opened.wait()
    if limit.cancelled_caught:
        raise MuxedStreamError(f"Timed out waiting for window update after {WINDOW_WAIT_LIMIT:g} seconds.")


async def _write_frame(self: yamux.Yamux, frame: bytes) -> None:
    """py-libp2p's `Yamux._write_frame` without decoding every frame's header for a debug line."""
    async with self._write_lock:  # noqa: SLF001
        await self.secured_conn.write(frame)
    await trio.lowlevel.checkpoint()
