"""Session fixtures with the tiny demo corpus, on local disk and in the moto S3 server.

Imported by tests/conftest.py so every test package can use them.
"""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory) -> str:
    """The `tiny` demo corpus (seed 0) in a local folder; treat it as read-only."""
    from sonar_ray.demo import generate_corpus

    root = tmp_path_factory.mktemp("corpus") / "tiny"
    generate_corpus(str(root), "tiny", seed=0)
    return str(root)


@pytest.fixture(scope="session")
def tiny_corpus_s3(s3_server) -> str:
    """The same corpus written straight to a bucket of the moto server: 's3://tiny-corpus/v1'."""
    import boto3

    from sonar_ray.demo import generate_corpus

    boto3.client("s3").create_bucket(Bucket="tiny-corpus")
    generate_corpus("s3://tiny-corpus/v1", "tiny", seed=0)
    return "s3://tiny-corpus/v1"
