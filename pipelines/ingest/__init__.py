"""Ingest: Kafka messages to typed staging rows (``parse``), the Beam stages (``transforms``) and one pass
(``job.run_ingest``).

Nothing is imported here: ``parse`` is pure and light, and callers that only parse (the demo's malformed
messages, tests) should not pay for Apache Beam.
"""
