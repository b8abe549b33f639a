"""actionhooks: capture marketing-platform events and deliver them to hooks."""

__version__ = "0.1.0"
