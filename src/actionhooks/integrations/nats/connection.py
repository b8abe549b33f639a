"""How actionhooks reaches NATS: the connection settings the transport (``transport.py``) and the consumer
(``consumer.py``) share, and the client options made from them.

``servers`` are ``nats://host:port`` or ``tls://host:port`` URLs (``host:port`` means ``nats://``); with
``tls://`` the server's certificate is verified against the system's CAs. Importing this module does not import
nats-py.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar
from urllib.parse import urlsplit

import msgspec

from ...errors import ValidationError
from ..base import SecretSettings

CONNECT_TIMEOUT_S = 5.0
DEFAULT_PORT = 4222


def pinned_url(url: str, address: str, port: int) -> str:
    """``url`` with its host replaced by ``address`` (an IP, resolved and checked beforehand): the client connects
    there without resolving the name again."""
    host = f"[{address}]" if ":" in address else address
    return f"{urlsplit(url).scheme}://{host}:{port}"


class Credentials(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """One of: ``user`` + ``password``; ``token``; ``creds`` (the text of a ``.creds`` file: user JWT and NKey
    seed — needs the ``nkeys`` package)."""

    user: str | None = None
    password: Annotated[str | None, msgspec.Meta(description="password (never logged)")] = None
    token: Annotated[str | None, msgspec.Meta(description="token (never logged)")] = None
    creds: Annotated[str | None, msgspec.Meta(description="the text of a .creds file (never logged)")] = None


class ConnectionSettings(SecretSettings, kw_only=True):
    """``servers``: URLs (a list, or one comma-separated string); ``credentials``: how to log in, if at all."""

    SECRET_FIELDS: ClassVar[tuple[str, ...]] = ("credentials",)
    DESTINATION_FIELDS: ClassVar[tuple[str, ...]] = ("servers",)

    servers: Annotated[list[str] | str, msgspec.Meta(description="nats://host:port or tls://host:port[,…]")]
    credentials: Credentials | None = None

    @property
    def server_urls(self) -> list[str]:
        parts = self.servers.split(",") if isinstance(self.servers, str) else self.servers
        return [p.strip() if "://" in p else f"nats://{p.strip()}" for p in parts if p.strip()]

    def check(self) -> None:
        if not self.server_urls:
            raise ValidationError("servers must name at least one server", "servers")
        for url in self.server_urls:
            parts = urlsplit(url)
            if parts.scheme not in ("nats", "tls") or not parts.hostname:
                raise ValidationError(f"{url!r} is not nats://host:port or tls://host:port", "servers")
        c = self.credentials
        if c is not None:
            forms = [c.user is not None or c.password is not None, c.token is not None, c.creds is not None]
            if sum(forms) != 1 or (forms[0] and not (c.user and c.password)):
                raise ValidationError(
                    "credentials: give user and password, or token, or creds", "credentials"
                )

    def hosts(self) -> list[str]:
        return [urlsplit(u).hostname or "" for u in self.server_urls]

    def endpoints(self) -> list[tuple[str, str, int]]:
        """``(url, host, port)`` of each server (port 4222 when the URL has none)."""
        out = []
        for url in self.server_urls:
            parts = urlsplit(url)
            out.append((url, parts.hostname or "", parts.port or DEFAULT_PORT))
        return out

    def login_options(self) -> dict[str, Any]:
        """The credentials as ``nats.connect`` options (raises ``ModuleNotFoundError`` for ``creds`` without
        ``nkeys``, when connecting)."""
        c = self.credentials
        if c is not None and c.user is not None:
            return {"user": c.user, "password": c.password}
        if c is not None and c.token is not None:
            return {"token": c.token}
        if c is not None and c.creds is not None:
            from nats.aio.client import RawCredentials

            return {"user_credentials": RawCredentials(c.creds)}
        return {}
