"""Capture at the source (docs/capture.md): signed tracking tokens (``tokens.py``), the visitor's user agent and
the bot / machine-open flags (``visitor.py``), and what the public endpoints record (``record.py``); the routes
are ``api/tracking.py``, the site pixel and popup collector script ``collector.js``."""
