"""Read and change the model lineage registry.

    python -m sonar_ray.registry --registry URI list [--domain D]
    python -m sonar_ray.registry --registry URI show VERSION
    python -m sonar_ray.registry --registry URI promote VERSION [--reason TEXT]
    python -m sonar_ray.registry --registry URI rollback DOMAIN [--reason TEXT]

Changes take the registry lease first (waiting up to --lease-wait seconds), so they never
interleave with a watcher's poll.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from sonar_ray.pipelines.lease import Lease, LeaseLost, default_holder
from sonar_ray.pipelines.registry import Registry


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m sonar_ray.registry", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--registry", required=True, help="registry URI (s3:// prefix or local folder)")
    p.add_argument("--lease-wait", type=float, default=120.0, help="seconds to wait for a watcher's poll")
    sub = p.add_subparsers(dest="command", required=True)
    ls = sub.add_parser("list", help="one line per version: id, status, parent, metrics, current marker")
    ls.add_argument("--domain")
    show = sub.add_parser("show", help="the full JSON record of a version")
    show.add_argument("version")
    promote = sub.add_parser("promote", help="make a version its domain's current model (operator override)")
    promote.add_argument("version")
    promote.add_argument("--reason", default="promoted by operator")
    rollback = sub.add_parser("rollback", help="demote the current version; the previous one is current again")
    rollback.add_argument("domain")
    rollback.add_argument("--reason", default="rolled back by operator")
    return p


def _locked(registry: Registry, wait_s: float) -> Lease:
    lease = Lease(registry.lease_uri, ttl_s=60.0, holder=f"registry-cli:{default_holder()}")
    deadline = time.time() + wait_s
    while not lease.acquire():
        if time.time() > deadline:
            held = lease.current()
            raise LeaseLost(f"registry is busy: lease held by {held.holder if held else '?'}")
        time.sleep(1.0)
    return lease


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    registry = Registry(args.registry)
    if args.command == "list":
        for v in registry.versions(args.domain):
            mark = "*" if registry.pointer(v.domain).version == v.version else " "
            metrics = " ".join(f"{k}={v.metrics[k]:.4f}" for k in ("adaptability", "forgetting") if k in v.metrics)
            print(f"{mark} {v.version:<28} {v.status:<10} parent={v.parent or '-':<28} "
                  f"objects={len(v.consumed):<5} {metrics} {v.reason or ''}")
    elif args.command == "show":
        record = json.loads(registry.get(args.version).to_json())
        record["current"] = registry.pointer(record["domain"]).version == args.version
        print(json.dumps(record, indent=2, sort_keys=True))
    elif args.command == "promote":
        lease = _locked(registry, args.lease_wait)
        try:
            Registry(args.registry, fence=lease.fence).promote(registry.get(args.version), args.reason)
        finally:
            lease.release()
        print(f"{args.version} is now the current model")
    elif args.command == "rollback":
        lease = _locked(registry, args.lease_wait)
        try:
            restored = Registry(args.registry, fence=lease.fence).rollback(args.domain, args.reason)
        finally:
            lease.release()
        print(f"{args.domain}: current model is now {restored or 'the root checkpoint'}")


if __name__ == "__main__":
    try:
        main()
    except (KeyError, ValueError, LeaseLost) as e:
        sys.exit(f"error: {e}")
