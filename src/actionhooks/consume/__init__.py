"""Broker ingest: ``actionhooks consume rabbitmq|kafka|nats`` reads raw events from a queue, topic or subject
into the same ingest path as ``POST /v1/events`` (``base.py`` holds the shared contract; one module per broker,
each importing its client library only when used)."""
