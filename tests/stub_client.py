"""The stub transport's "client library" in ``tests/test_dispatch.py``: notes whether the thread of the event loop
(the main thread) imported it."""

from __future__ import annotations

import threading

IMPORTED_ON_MAIN_THREAD = threading.current_thread() is threading.main_thread()
