"""Our changes to py-libp2p's Yamux (net/tuning.py), pinned: frames that fit one Noise message and
window updates only once half the window is consumed, on real hosts."""

from __future__ import annotations

import os
from collections import Counter

import multiaddr
import trio
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.custom_types import TProtocol
from libp2p.peer.peerinfo import info_from_p2p_addr
from libp2p.security.noise import io as noise_io
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
