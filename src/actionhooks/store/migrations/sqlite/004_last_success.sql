-- When the hook last delivered a batch (docs/delivery.md): with last_error, whether it is healthy now.
ALTER TABLE hooks ADD COLUMN last_success_at REAL;
