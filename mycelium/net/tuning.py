"""py-libp2p 0.8.1's Yamux, changed for throughput in one place (`apply`, called by `build_host`).

Every Noise message costs a pass through py-libp2p's Python stack on both ends (encrypt, length
prefix, socket write; read, decrypt, Yamux dispatch): on one stream that, not the cipher, is the
limit. Two things made many more messages than needed (benchmarks/RESULTS.md, issue 12):

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

Only what we send changes: Yamux lets the sender pick frame sizes and the receiver pick when to
return credit, and py-libp2p checks no frame size on receipt, so peers of any version and
implementation interoperate as before. `grant_receive_window` lets a puller give a holder more
credit at once (a window update, as go-yamux sends when it opens a stream).
"""

from __future__ import annotations

from libp2p.security.noise.io import MAX_PLAINTEXT_LENGTH
from libp2p.stream_muxer.yamux import yamux

YAMUX_FRAME_BYTES = MAX_PLAINTEXT_LENGTH  # header + payload of one Yamux frame = one Noise message


def apply() -> None:
    """Idempotent; affects every Yamux connection of this process opened or written after it."""
    yamux.MAX_MESSAGE_SIZE = YAMUX_FRAME_BYTES
    yamux.YamuxStream._auto_tune_and_send_window_update = _batched_window_update  # type: ignore[method-assign]


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
