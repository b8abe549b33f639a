"""The hooks as the API and the dispatcher see them: settings parsed into a :class:`~.hooks.HookSpec`, sealed
(encrypted, :mod:`.crypto`) when written to the store and unsealed when read. The store keeps only the sealed bytes.

The key is ``ACTIONHOOKS_SECRET_KEY`` or, without it, one the store generates and keeps in its ``meta`` table.
"""

from __future__ import annotations

import msgspec

from .crypto import SettingsCipher
from .hooks import HookSpec, parse_hook
from .store.base import Store, StoredHook


class Hook(msgspec.Struct, kw_only=True, frozen=True):
    id: int
    account_id: int
    spec: HookSpec
    cursor: int
    generation: int
    created_at: float
    updated_at: float
    last_error: str | None = None
    last_error_at: float | None = None
    last_success_at: float | None = None
    disabled_reason: str | None = None  # the service stopped it (auto-disable): why, and when
    disabled_at: float | None = None


class HookRegistry:
    def __init__(self, store: Store, secret_key: str | None = None) -> None:
        self.store = store
        self._secret_key = secret_key
        self._cipher: SettingsCipher | None = None

    async def open(self) -> None:
        """Load the key (the store must be open); ``ConfigError`` when it is not a Fernet key."""
        key = self._secret_key or await self.store.meta_value("secret_key", SettingsCipher.new_key)
        self._cipher = SettingsCipher(key)

    @property
    def cipher(self) -> SettingsCipher:
        assert self._cipher is not None, "the hook registry is not open"
        return self._cipher

    def seal(self, spec: HookSpec) -> bytes:
        return self.cipher.seal(msgspec.json.encode(spec.to_builtins(public=False)))

    def unseal(self, stored: StoredHook) -> Hook:
        """The hook with its parsed settings; ``ConfigError`` when they cannot be decrypted."""
        spec = parse_hook(msgspec.json.decode(self.cipher.open(stored.settings)))
        return Hook(
            id=stored.id,
            account_id=stored.account_id,
            spec=spec,
            cursor=stored.cursor,
            generation=stored.generation,
            created_at=stored.created_at,
            updated_at=stored.updated_at,
            last_error=stored.last_error,
            last_error_at=stored.last_error_at,
            last_success_at=stored.last_success_at,
            disabled_reason=stored.disabled_reason,
            disabled_at=stored.disabled_at,
        )

    async def create_hook(self, account_id: int, spec: HookSpec) -> Hook:
        return self.unseal(await self.store.create_hook(account_id, self.seal(spec), spec.active))

    async def get_hook(self, account_id: int, hook_id: int) -> Hook | None:
        stored = await self.store.get_hook(account_id, hook_id)
        return self.unseal(stored) if stored else None

    async def list_hooks(self, account_id: int) -> list[Hook]:
        return [self.unseal(h) for h in await self.store.list_hooks(account_id)]

    async def update_hook(
        self, account_id: int, hook_id: int, spec: HookSpec, *, keep_cursor: bool = False
    ) -> Hook | None:
        """Replace the settings (see :meth:`~.store.base.Store.update_hook`)."""
        stored = await self.store.update_hook(
            account_id, hook_id, self.seal(spec), spec.active, keep_cursor=keep_cursor
        )
        return self.unseal(stored) if stored else None

    async def disable_hook(self, hook: Hook, reason: str, at: float) -> Hook | None:
        """Stop ``hook`` on the service's own decision (see :meth:`~.store.base.Store.disable_hook`); None when it
        changed meanwhile."""
        spec = msgspec.structs.replace(hook.spec, active=False)
        stored = await self.store.disable_hook(hook.id, hook.generation, self.seal(spec), reason, at)
        return self.unseal(stored) if stored else None

    async def delete_hook(self, account_id: int, hook_id: int) -> bool:
        return await self.store.delete_hook(account_id, hook_id)

    async def load_hook(self, hook_id: int) -> Hook | None:
        """A hook by id, whatever its account (the dispatcher's view)."""
        stored = await self.store.load_hook(hook_id)
        return self.unseal(stored) if stored else None
