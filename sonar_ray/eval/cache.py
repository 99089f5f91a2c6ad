"""Embeddings cached by checkpoint content, so re-evaluating a base model costs one file hash.

Key = sha256 over (checkpoint content digest, embedding spec fields, clip URIs in order). The audio
files themselves are not hashed: a corpus is treated as immutable under its URIs.
"""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import numpy as np

from sonar_ray import storage

DEFAULT_CACHE_DIR = str(Path.home() / ".cache" / "sonar-ray" / "embeddings")


def checkpoint_digest(uri: str, chunk: int = 1 << 22) -> str:
    """sha256 of a checkpoint file's bytes, streamed."""
    fs, path = storage.filesystem(uri)
    h = hashlib.sha256()
    with fs.open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def cache_key(model_digest: str, spec_fields: dict, uris: list[str]) -> str:
    payload = json.dumps({"model": model_digest, "spec": spec_fields, "uris": list(uris)}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()


class EmbeddingCache:
    """(embeddings, errors) per key as .npz files under a local folder or bucket prefix."""

    def __init__(self, root: str = DEFAULT_CACHE_DIR):
        self.root = root

    def _uri(self, key: str) -> str:
        return storage.join(self.root, f"{key}.npz")

    def get(self, key: str) -> tuple[np.ndarray, list[str]] | None:
        uri = self._uri(key)
        if not storage.exists(uri):
            return None
        with np.load(io.BytesIO(storage.read_bytes(uri))) as z:
            return z["embeddings"], [str(e) for e in z["errors"]]

    def put(self, key: str, embeddings: np.ndarray, errors: list[str]) -> None:
        buf = io.BytesIO()
        np.savez(buf, embeddings=embeddings, errors=np.array(errors, dtype=str))
        storage.write_bytes_atomic(self._uri(key), buf.getvalue())
