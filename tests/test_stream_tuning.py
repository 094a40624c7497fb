"""Our changes to py-libp2p's Yamux (net/tuning.py), pinned: frames that fit one Noise message and
window updates only once half the window is consumed, on real hosts; a writer out of credit that
wakes on the update, on trio's mock clock."""

from __future__ import annotations

import os
from collections import Counter

import multiaddr
import trio
import trio.testing
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.custom_types import TProtocol
from libp2p.peer.peerinfo import info_from_p2p_addr
from libp2p.security.noise import io as noise_io
from libp2p.stream_muxer.exceptions import MuxedStreamError
from libp2p.stream_muxer.yamux import yamux

from mycelium.net import tuning
from mycelium.net.host import build_host

PROTOCOL = TProtocol("/mycelium/test/stream/1.0.0")
SIZE = 8 << 20
LOOPBACK = [multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")]


def _send_over_one_stream(monkeypatch, grant: int | None = None) -> tuple[bytes, Counter[str]]:  # type: ignore[no-untyped-def]
    blob = os.urandom(SIZE)
    sizes: Counter[str] = Counter()
    encrypt = noise_io.NoiseTransportReadWriter.encrypt

    def counting(self, data: bytes) -> bytes:  # type: ignore[no-untyped-def]
        sizes["full" if len(data) == noise_io.MAX_PLAINTEXT_LENGTH else "other"] += 1
        return encrypt(self, data)

    async def main() -> bytes:
        sender, receiver = build_host(create_new_key_pair()), build_host(create_new_key_pair())
        async with sender.run(LOOPBACK), receiver.run(LOOPBACK):
            done = trio.Event()

            async def handle(stream) -> None:  # type: ignore[no-untyped-def]
                for offset in range(0, SIZE, 1 << 20):
                    await stream.write(blob[offset : offset + (1 << 20)])
                await done.wait()

            sender.set_stream_handler(PROTOCOL, handle)
            info = info_from_p2p_addr(sender.get_addrs()[0])
            await receiver.connect(info)
            stream = await receiver.new_stream(info.peer_id, [PROTOCOL])
            if grant:
                await tuning.grant_receive_window(stream, grant)
            monkeypatch.setattr(noise_io.NoiseTransportReadWriter, "encrypt", counting)
            got = bytearray()
            with trio.fail_after(30):
                while len(got) < SIZE:
                    got += await stream.read(1 << 18)
            monkeypatch.setattr(noise_io.NoiseTransportReadWriter, "encrypt", encrypt)
            done.set()
            await stream.reset()
            return bytes(got)

    return blob, Counter(dict(sizes)) if trio.run(main) == blob else Counter({"mismatch": 1})


def test_building_a_host_applies_our_yamux_changes() -> None:
    build_host(create_new_key_pair())
    assert yamux.MAX_MESSAGE_SIZE == noise_io.MAX_PLAINTEXT_LENGTH
    assert yamux.YamuxStream._auto_tune_and_send_window_update is tuning._batched_window_update  # noqa: SLF001
    assert yamux.YamuxStream.write is tuning._write  # noqa: SLF001


def test_a_big_stream_goes_out_in_full_noise_messages_with_few_window_updates(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    _, sizes = _send_over_one_stream(monkeypatch)
    full = SIZE // (noise_io.MAX_PLAINTEXT_LENGTH - 12)
    assert "mismatch" not in sizes
    assert sizes["full"] >= full * 0.9, sizes
    # py-libp2p as shipped: a 17-byte tail per frame plus a window update per read (> 2 per frame)
    assert sizes["other"] <= full * 0.25, sizes


def test_a_granted_window_still_delivers_every_byte(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    _, sizes = _send_over_one_stream(monkeypatch, grant=4 << 20)
    assert "mismatch" not in sizes and sizes["full"] > 0


def _stream_out_of_credit() -> yamux.YamuxStream:
    stream = yamux.YamuxStream(1, None, is_initiator=True)  # type: ignore[arg-type]  # the wait needs no connection
    stream.send_window = 0
    return stream


def test_a_writer_out_of_credit_wakes_on_the_window_update_not_on_a_timer() -> None:
    async def main() -> bool:
        stream = _stream_out_of_credit()
        resumed: list[int] = []

        async def writer(number: int) -> None:
            await tuning._wait_for_credit(stream)  # noqa: SLF001
            resumed.append(number)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(writer, 1)
            nursery.start_soon(writer, 2)  # two writers of one stream wait at once
            await trio.testing.wait_all_tasks_blocked()
            stream.send_window += 4096  # what a WINDOW_UPDATE frame does
            await trio.testing.wait_all_tasks_blocked()
            nursery.cancel_scope.cancel()  # a writer still waiting fails the test instead of hanging it
        return sorted(resumed) == [1, 2]  # the clock has not moved: only the update can have woken them

    assert trio.run(main, clock=trio.testing.MockClock())


def test_a_writer_out_of_credit_notices_a_closed_stream_and_gives_up_after_the_limit() -> None:
    async def main() -> tuple[bool, float]:
        clock = trio.lowlevel.current_clock()
        closed, never = _stream_out_of_credit(), _stream_out_of_credit()
        outcome: dict[str, float] = {}

        async def wait(name: str, stream: yamux.YamuxStream) -> None:
            try:
                await tuning._wait_for_credit(stream)  # noqa: SLF001
            except MuxedStreamError:
                outcome[name] = trio.current_time()
            else:
                outcome[name] = -trio.current_time()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(wait, "closed", closed)
            nursery.start_soon(wait, "never", never)
            await trio.testing.wait_all_tasks_blocked()
            closed.closed = True
            clock.jump(tuning.CLOSED_CHECK_INTERVAL)  # type: ignore[attr-defined]
            await trio.testing.wait_all_tasks_blocked()
            noticed = "closed" in outcome and outcome["closed"] <= 0  # returned: the write loop then raises
            clock.jump(tuning.WINDOW_WAIT_LIMIT)  # type: ignore[attr-defined]
            await trio.testing.wait_all_tasks_blocked()
            nursery.cancel_scope.cancel()  # a writer still waiting fails the test instead of hanging it
        return noticed, outcome.get("never", 0.0)

    noticed, gave_up_at = trio.run(main, clock=trio.testing.MockClock())
    assert noticed
    assert gave_up_at >= tuning.WINDOW_WAIT_LIMIT  # raised, at the limit and not before
