"""Ingest: Kafka messages to typed staging rows (``parse``), the Beam stages (``transforms``), one pass
(``job.run_ingest``) and the batches data quality held back, with operators' decisions (``batches``).

Nothing is imported here: ``parse`` is pure and light, and callers that only parse (the demo's malformed
messages, tests) should not pay for Apache Beam.
"""
