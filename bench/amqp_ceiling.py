"""The RabbitMQ broker's own ceiling: the fastest a client can get persistent messages confirmed into a queue here.

A minimal AMQP 0-9-1 publisher (pamqp frames on a blocking socket, no client library): every frame of a batch is
encoded before the clock starts and written with one ``sendall``; the next batch goes once the broker has confirmed
the previous one (``window`` 1, as a hook's worker sends). What is left is the broker's work, so the transport's
figure divided by this one is the share of the broker's ceiling the transport reaches. A baseline for the
benchmark, not a client: it handles no errors beyond failing.

    .venv/bin/python -m bench.amqp_ceiling --events 200000 --queue-type quorum
"""

from __future__ import annotations

import argparse
import socket
import time
import uuid
from typing import TypeVar

from pamqp import body as pbody
from pamqp import commands, frame, header
from pamqp.commands import Basic

CHANNEL = 1
_Frame = TypeVar("_Frame")


class _Connection:
    def __init__(self, host: str, port: int, user: str, password: str) -> None:
        self.sock = socket.create_connection((host, port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buffer = bytearray()
        self.sock.sendall(b"AMQP\x00\x00\x09\x01")
        self.expect(commands.Connection.Start)
        self.send(
            commands.Connection.StartOk(
                client_properties={"product": "actionhooks-bench"},
                mechanism="PLAIN",
                response=f"\0{user}\0{password}",
                locale="en_US",
            ),
            0,
        )
        tune = self.expect(commands.Connection.Tune)
        self.send(commands.Connection.TuneOk(tune.channel_max, tune.frame_max, 0), 0)
        self.send(commands.Connection.Open(virtual_host="/"), 0)
        self.expect(commands.Connection.OpenOk)
        self.send(commands.Channel.Open())
        self.expect(commands.Channel.OpenOk)
        self.send(commands.Confirm.Select())
        self.expect(commands.Confirm.SelectOk)

    def send(self, method: object, channel: int = CHANNEL) -> None:
        self.sock.sendall(frame.marshal(method, channel))  # type: ignore[arg-type]

    def receive(self) -> object:
        while True:
            if self.buffer:
                try:
                    used, _, received = frame.unmarshal(bytes(self.buffer))
                except Exception:  # pamqp: not a whole frame yet
                    pass
                else:
                    del self.buffer[:used]
                    return received
            data = self.sock.recv(1 << 20)
            if not data:
                raise EOFError("the broker closed the connection")
            self.buffer += data

    def expect(self, kind: type[_Frame]) -> _Frame:
        received = self.receive()
        if not isinstance(received, kind):
            raise RuntimeError(f"expected {kind.__name__}, got {received!r}")
        return received


def _encode(queue: str, bodies: list[bytes], first: int) -> bytes:
    parts = []
    for n, body in enumerate(bodies, first):
        properties = Basic.Properties(
            content_type="application/json",
            delivery_mode=2,
            message_id=f"{n:036d}",
            message_type="deliv",
            app_id="actionhooks",
        )
        parts.append(frame.marshal(Basic.Publish(exchange="", routing_key=queue, mandatory=True), CHANNEL))
        parts.append(frame.marshal(header.ContentHeader(0, len(body), properties), CHANNEL))
        parts.append(frame.marshal(pbody.ContentBody(body), CHANNEL))
    return b"".join(parts)


def ceiling(
    bodies: list[bytes],
    queue_type: str,
    batch: int = 1000,
    host: str = "127.0.0.1",
    port: int = 5672,
    user: str = "guest",
    password: str = "guest",
) -> float:
    """Confirmed messages per second for ``bodies`` published into a fresh durable queue of ``queue_type``."""
    amqp = _Connection(host, port, user, password)
    queue = f"ah-bench-ceiling-{uuid.uuid4().hex[:10]}"
    amqp.send(commands.Queue.Declare(queue=queue, durable=True, arguments={"x-queue-type": queue_type}))
    amqp.expect(commands.Queue.DeclareOk)
    batches = [_encode(queue, bodies[i : i + batch], i + 1) for i in range(0, len(bodies), batch)]
    try:
        started = time.monotonic()
        confirmed = 0
        for n, payload in enumerate(batches):
            amqp.sock.sendall(payload)
            last = min((n + 1) * batch, len(bodies))
            while confirmed < last:
                received = amqp.receive()
                if isinstance(received, Basic.Nack):
                    raise RuntimeError("the broker nacked a message")
                if isinstance(
                    received, Basic.Ack
                ):  # in order on one queue; ``multiple`` covers the earlier ones
                    confirmed = max(confirmed, received.delivery_tag)
        return len(bodies) / (time.monotonic() - started)
    finally:
        amqp.send(commands.Queue.Delete(queue=queue))
        amqp.expect(commands.Queue.DeleteOk)
        amqp.sock.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--queue-type", default="quorum", choices=["quorum", "classic"])
    parser.add_argument("--batch", type=int, default=1000)
    args = parser.parse_args()
    from .run import sample_events
    from .transports import messages_of

    bodies = [m.body for m in messages_of(sample_events(args.events))]
    rate = ceiling(bodies, args.queue_type, args.batch)
    print(f"{args.queue_type} queue, {args.batch}/batch: {rate:,.0f} confirmed messages/s")


if __name__ == "__main__":
    main()
