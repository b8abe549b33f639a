"""How actionhooks reaches a RabbitMQ broker: the connection settings the transports (``transport.py``) and the
consumer (``consumer.py``) share, and the one place that opens a :class:`~.link.Link` from them.

``port`` defaults to 5672, or 5671 with ``tls`` (the server's certificate is checked against the system's CAs and
``host``). Importing this module does not import pika (``link.py`` does, when a connection is opened).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Annotated, ClassVar

import msgspec

from ...errors import ValidationError
from ..base import SecretSettings

if TYPE_CHECKING:
    from .link import Link

CONNECT_TIMEOUT_S = 10.0

Name = Annotated[str, msgspec.Meta(min_length=1, max_length=255)]


class ConnectionSettings(SecretSettings, kw_only=True):
    SECRET_FIELDS: ClassVar[tuple[str, ...]] = ("password",)
    DESTINATION_FIELDS: ClassVar[tuple[str, ...]] = ("host", "port", "tls")

    host: Annotated[Name, msgspec.Meta(description="broker host name or address")]
    port: Annotated[int, msgspec.Meta(ge=1, le=65535, description="5672, or 5671 with --tls")] | None = None
    user: Name
    password: Annotated[str, msgspec.Meta(description="broker password (never logged)")]
    vhost: Name = "/"
    tls: Annotated[bool, msgspec.Meta(description="connect with TLS (the certificate is verified)")] = False

    def check(self) -> None:
        if any(c in self.host for c in "/@ ") or self.host.startswith(("amqp:", "amqps:")):
            raise ValidationError("host must be a host name or address, not a URL", "host")

    def hosts(self) -> list[str]:
        return [self.host]

    @property
    def effective_port(self) -> int:
        return self.port or (5671 if self.tls else 5672)

    @property
    def where(self) -> str:
        """``host:port vhost '…'``, for messages."""
        return f"{self.host}:{self.effective_port} vhost {self.vhost!r}"

    async def connect(self, *, name: str, confirms: bool = False, addresses: Sequence[str] = ()) -> Link:
        """A link to the broker (a channel in publisher-confirm mode with ``confirms``); raises pika's
        exceptions.

        ``addresses``: the addresses ``host`` was resolved to and checked (``NetGuard.addresses``); they are tried
        in order (the next one only when a TCP connection could not be made) and ``host`` is not resolved again,
        so a name that answers otherwise the second time (DNS rebinding) cannot lead elsewhere. With ``tls`` the
        certificate is still checked against ``host``. None: pika resolves ``host`` itself."""
        from pika.adapters.utils.connection_workflow import AMQPConnectorSocketConnectError

        from .link import Link

        targets = list(addresses) or [self.host]
        for n, target in enumerate(targets, 1):
            try:
                return await Link.open(
                    target,
                    self.effective_port,
                    self.user,
                    self.password,
                    self.vhost,
                    tls=self.tls,
                    tls_hostname=self.host,
                    name=name,
                    confirms=confirms,
                    connect_timeout=CONNECT_TIMEOUT_S,
                )
            except Exception as exc:
                wrapped = exc.args[0] if exc.args and isinstance(exc.args[0], BaseException) else exc
                attempts = getattr(wrapped, "exceptions", None) or [wrapped]
                if n == len(targets) or not isinstance(attempts[-1], AMQPConnectorSocketConnectError):
                    raise
        raise AssertionError("unreachable")
