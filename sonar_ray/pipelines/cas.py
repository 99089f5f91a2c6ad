"""Compare-and-swap on single small objects: the one primitive the lease and the registry build on.

Each object has a tag (S3: its ETag; local: a SHA-256 of its bytes). `create` succeeds only if the
object is absent, `replace` only if its tag is still the one the caller read. On S3 this maps to
conditional PutObject (`If-None-Match: *` / `If-Match`), which AWS S3 and moto >= 5.2 honour. On a
local folder, `create` hard-links a fully written temp file (fails if the name exists) and
`replace` compares-and-renames under an exclusive `flock` on a sidecar file.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from sonar_ray import storage


class CasStore(Protocol):
    def read(self) -> tuple[bytes, str] | None: ...
    def create(self, data: bytes) -> str | None: ...
    def replace(self, data: bytes, tag: str) -> str | None: ...


def _precondition_failed(err) -> bool:
    code = err.response.get("Error", {}).get("Code", "")
    status = err.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    # 409 ConditionalRequestConflict: a concurrent conditional write on the same key won the race.
    return code in ("PreconditionFailed", "ConditionalRequestConflict") or status in (409, 412)


@dataclass
class S3Object:
    bucket: str
    key: str

    def _client(self):
        import boto3

        return boto3.client("s3")

    def read(self) -> tuple[bytes, str] | None:
        from botocore.exceptions import ClientError

        try:
            r = self._client().get_object(Bucket=self.bucket, Key=self.key)
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                return None
            raise
        return r["Body"].read(), r["ETag"]

    def _put(self, data: bytes, **condition) -> str | None:
        from botocore.exceptions import ClientError

        try:
            return self._client().put_object(Bucket=self.bucket, Key=self.key, Body=data, **condition)["ETag"]
        except ClientError as e:
            if _precondition_failed(e):
                return None
            raise

    def create(self, data: bytes) -> str | None:
        return self._put(data, IfNoneMatch="*")

    def replace(self, data: bytes, tag: str) -> str | None:
        return self._put(data, IfMatch=tag)


@dataclass
class LocalFile:
    path: Path

    @staticmethod
    def _tag(data: bytes) -> str:
        return hashlib.sha256(data).hexdigest()

    def read(self) -> tuple[bytes, str] | None:
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return None
        return data, self._tag(data)

    def _temp(self, data: bytes) -> Path:
        return storage.stage_file(self.path.parent, self.path.name, data)

    def create(self, data: bytes) -> str | None:
        tmp = self._temp(data)
        try:
            os.link(tmp, self.path)  # atomic, and fails if the name exists (O_EXCL semantics)
        except FileExistsError:
            return None
        finally:
            os.unlink(tmp)
        return self._tag(data)

    def replace(self, data: bytes, tag: str) -> str | None:
        lock = self.path.with_name(f".{self.path.name}.lock")
        with open(lock, "a+b") as lf:
            fcntl.flock(lf, fcntl.LOCK_EX)
            current = self.read()
            if current is None or current[1] != tag:
                return None
            os.replace(self._temp(data), self.path)
        return self._tag(data)


def cas_object(uri: str) -> CasStore:
    """The conditional-write handle for `uri` (s3:// or a local path)."""
    uri = str(uri)
    if uri.startswith("s3://"):
        bucket, _, key = uri[len("s3://"):].partition("/")
        return S3Object(bucket, key)
    if "://" in uri and not uri.startswith("file://"):
        raise ValueError(f"{uri!r}: conditional writes are implemented for s3:// and local folders only")
    return LocalFile(Path(uri.removeprefix("file://")))
