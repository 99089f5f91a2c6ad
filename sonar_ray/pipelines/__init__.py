"""Scheduled incremental adaptation: bucket watcher (watch.py) and model lineage registry (registry.py)."""
