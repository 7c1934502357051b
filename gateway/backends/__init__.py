"""Results backends: one module per technology, each implementing ``ResultsBackend``
(gateway/lookup.py and gateway/model_directory.py hold the Protocols)."""
