"""Encryption at rest for hook settings (transport credentials live there).

Fernet (AES-128-CBC + HMAC-SHA256) from ``cryptography``. The key comes from ``ACTIONHOOKS_SECRET_KEY``; without
it the store generates one and keeps it in its own ``meta`` table — which keeps credentials out of casual dumps
of the hooks table but is no protection against a stolen database: production sets the variable.
"""

from __future__ import annotations

from cryptography.fernet import Fernet, InvalidToken

from .errors import ConfigError


class SettingsCipher:
    def __init__(self, key: str | bytes) -> None:
        try:
            self._fernet = Fernet(key)
        except (ValueError, TypeError) as exc:
            raise ConfigError(
                "ACTIONHOOKS_SECRET_KEY must be a Fernet key (32 url-safe base64 bytes)"
            ) from exc

    @staticmethod
    def new_key() -> str:
        return Fernet.generate_key().decode()

    def seal(self, data: bytes) -> bytes:
        return self._fernet.encrypt(data)

    def open(self, token: bytes) -> bytes:
        try:
            return self._fernet.decrypt(token)
        except InvalidToken as exc:
            raise ConfigError("hook settings cannot be decrypted: ACTIONHOOKS_SECRET_KEY changed?") from exc
