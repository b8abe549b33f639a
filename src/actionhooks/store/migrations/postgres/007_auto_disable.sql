-- Auto-disable (docs/delivery.md#auto-disable): a hook the service stopped because its deliveries failed without a
-- success for ACTIONHOOKS_DISABLE_AFTER_S says why and when; resuming it clears both.
ALTER TABLE hooks ADD COLUMN disabled_reason TEXT;
ALTER TABLE hooks ADD COLUMN disabled_at DOUBLE PRECISION;
