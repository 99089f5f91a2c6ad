"""The replication benchmark (`benchmarks/replicate.py`): protocol (which runs, with which configs),
runner (trains them with the library pipeline, resumable) and report (tables, checks, plots, page)."""
