"""Measure one watcher poll over N already-consumed keys on a local moto S3 server.

    python tests/pipelines/measure_poll.py --keys 10000

Prints the listing time, the number of ListObjectsV2 requests, and the full no-op poll time.
"""

from __future__ import annotations

import argparse
import os
import socket
import time
from concurrent.futures import ThreadPoolExecutor


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--keys", type=int, default=10_000)
    args = p.parse_args()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    os.environ.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing",
                      AWS_DEFAULT_REGION="us-east-1", AWS_ENDPOINT_URL=f"http://127.0.0.1:{port}")
    import boto3
    from moto.server import ThreadedMotoServer

    from sonar_ray.pipelines.inventory import list_incoming
    from sonar_ray.pipelines.registry import Registry, Version
    from sonar_ray.pipelines.watch import WatchConfig, Watcher

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket="poll-cost")
        with ThreadPoolExecutor(16) as pool:
            list(pool.map(lambda i: s3.put_object(Bucket="poll-cost", Key=f"incoming/d{i % 4}/clip-{i:06d}.wav",
                                                  Body=b"x" * 64), range(args.keys)))
        calls = []
        s3_events = boto3.DEFAULT_SESSION.events if boto3.DEFAULT_SESSION else None
        if s3_events is not None:
            s3_events.register("before-call.s3.ListObjectsV2", lambda **kw: calls.append(1))
        t0 = time.perf_counter()
        objects = list_incoming("s3://poll-cost/incoming/")
        t_list, list_requests = time.perf_counter() - t0, len(calls)
        # Everything consumed by one recorded version per domain: the steady state of a quiet bucket.
        registry = Registry("s3://poll-cost/registry/")
        for d in sorted({o.domain for o in objects}):
            mine = [list(o.identity) for o in objects if o.domain == d]
            v = Version(version=f"{d}-000000000000", domain=d, parent=None, base="s3://poll-cost/base.pt",
                        consumed=mine, manifest="", output="", config={}, code_version="", job_id="", status="promoted")
            registry.create(v)
        cfg = WatchConfig(incoming="s3://poll-cost/incoming/", registry="s3://poll-cost/registry/",
                          base="s3://poll-cost/base.pt", prior="s3://poll-cost/prior/", probes="s3://poll-cost/eval/",
                          once=True, inline=True)
        t0 = time.perf_counter()
        report = Watcher(cfg).poll()
        t_poll = time.perf_counter() - t0
        assert report.acted and not report.started
        print(f"keys={len(objects)} list_s={t_list:.2f} list_requests={list_requests} "
              f"noop_poll_s={t_poll:.2f} (lease + listing + {len({o.domain for o in objects})} domain records)")
    finally:
        server.stop()


if __name__ == "__main__":
    main()
