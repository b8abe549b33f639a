"""Broker ingest: ``actionhooks consume rabbitmq|kafka|nats`` reads raw events from a queue, topic or subject
into the same ingest path as ``POST /v1/events``. ``base.py`` is the pipeline every consumer shares,
``configured.py`` runs the consumers of ``serve``'s consumers file; each broker's side lives with its integration
(``integrations/<broker>/consumer.py``), found through the integrations registry."""
