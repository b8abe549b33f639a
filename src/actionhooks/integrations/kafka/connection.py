"""How actionhooks reaches a Kafka cluster: the connection settings the transport (``transport.py``) and the consumer
(``consumer.py``) share, and the librdkafka settings made from them.

``security_protocol`` ``SSL``/``SASL_SSL`` verify the brokers' certificates against the system's CAs; the SASL ones
need ``sasl_mechanism``, ``sasl_username`` and ``sasl_password``. Importing this module does not import
confluent-kafka.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

import msgspec

from ...errors import ValidationError
from ..base import SecretSettings

CONNECT_TIMEOUT_S = 10.0

SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]


class ConnectionSettings(SecretSettings, kw_only=True):
    """``bootstrap_servers``: ``host:port`` strings (a list, or one comma-separated string)."""

    SECRET_FIELDS: ClassVar[tuple[str, ...]] = ("sasl_password",)
    DESTINATION_FIELDS: ClassVar[tuple[str, ...]] = ("bootstrap_servers", "security_protocol")

    bootstrap_servers: Annotated[list[str] | str, msgspec.Meta(description="host:port[,host:port…]")]
    security_protocol: SecurityProtocol = "PLAINTEXT"
    sasl_mechanism: SaslMechanism | None = None  # with SASL_PLAINTEXT or SASL_SSL
    sasl_username: Annotated[str | None, msgspec.Meta(description="SASL user name")] = None
    sasl_password: Annotated[str | None, msgspec.Meta(description="SASL password (never logged)")] = None

    @property
    def servers(self) -> list[str]:
        items = self.bootstrap_servers
        parts = items.split(",") if isinstance(items, str) else items
        return [p.strip() for p in parts if p.strip()]

    def check(self) -> None:
        if not self.servers:
            raise ValidationError("bootstrap_servers must name at least one host:port", "bootstrap_servers")
        sasl = (self.sasl_mechanism, self.sasl_username, self.sasl_password)
        if self.security_protocol.startswith("SASL_"):
            for name, value in zip(("sasl_mechanism", "sasl_username", "sasl_password"), sasl, strict=True):
                if not value:
                    raise ValidationError(f"{name} is required with {self.security_protocol}", name)
        elif any(v is not None for v in sasl):
            raise ValidationError(
                "SASL settings need security_protocol SASL_PLAINTEXT or SASL_SSL", "security_protocol"
            )

    def client_config(self, client_id: str) -> dict[str, Any]:
        """The librdkafka settings of a connection (credentials included), for producers and consumers."""
        config: dict[str, Any] = {
            "bootstrap.servers": ",".join(self.servers),
            "client.id": client_id,
            "socket.connection.setup.timeout.ms": int(CONNECT_TIMEOUT_S * 1000),
            "security.protocol": self.security_protocol,
        }
        if self.security_protocol.startswith("SASL_"):
            config |= {"sasl.mechanism": self.sasl_mechanism}
            config |= {"sasl.username": self.sasl_username, "sasl.password": self.sasl_password}
        return config
