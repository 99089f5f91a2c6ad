"""Readers for deploy/: the Dockerfile's instructions and the commands the Kubernetes manifests run."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
DOCKERFILE = DEPLOY / "Dockerfile"
MANIFESTS = sorted((DEPLOY / "kuberay").glob("*.yaml"))


def dockerfile_instructions(path: Path = DOCKERFILE) -> list[tuple[str, str]]:
    """[(INSTRUCTION, arguments)] with comments dropped and `\\` continuations joined."""
    out, pending = [], ""
    for line in path.read_text().splitlines():
        if line.lstrip().startswith("#") or not line.strip():
            continue
        pending += line.rstrip()
        if pending.endswith("\\"):
            pending = pending[:-1] + " "
            continue
        keyword, _, rest = pending.strip().partition(" ")
        out.append((keyword.upper(), rest.strip()))
        pending = ""
    return out


def dockerfile_args() -> dict[str, str]:
    """Default values of the build arguments (ARG NAME=value)."""
    return dict(a.split("=", 1) for k, a in dockerfile_instructions() if k == "ARG" and "=" in a)


def base_image() -> str:
    """The FROM image with the build arguments' defaults substituted."""
    (image,) = [a.split()[0] for k, a in dockerfile_instructions() if k == "FROM"]
    args = dockerfile_args()
    return re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], image)


def image_workdir() -> str:
    (workdir,) = [a for k, a in dockerfile_instructions() if k == "WORKDIR"]
    return workdir.rstrip("/")


def manifest_docs() -> list[tuple[Path, dict]]:
    return [(p, doc) for p in MANIFESTS for doc in yaml.safe_load_all(p.read_text()) if doc is not None]


def _strings(node, key=None):
    """Every command a manifest holds: scalar strings, and list-form container command/args joined."""
    if isinstance(node, dict):
        command = [str(x) for k in ("command", "args") for x in node.get(k) or []]
        if command:
            yield shlex.join(command)
        for k, v in node.items():
            if k not in ("command", "args"):
                yield from _strings(v, k)
    elif isinstance(node, list):
        for v in node:
            yield from _strings(v, key)
    elif isinstance(node, str):
        yield node


def python_commands() -> list[tuple[str, str, list[str]]]:
    """[(manifest name, repo-relative script, argv)] of every `python <script>.py ...` in the manifests.
    Scripts are named by their path in the image (WORKDIR/...), mapped back to the checkout here."""
    prefix = image_workdir() + "/"
    found = []
    for path, doc in manifest_docs():
        for text in _strings(doc):
            tokens = shlex.split(text)
            for i, tok in enumerate(tokens[:-1]):
                if Path(tok).name.startswith("python") and tokens[i + 1].endswith(".py"):
                    script = tokens[i + 1].removeprefix(prefix)
                    found.append((path.name, script, tokens[i + 2:]))
    return found


def image_paths() -> list[tuple[str, str]]:
    """[(manifest name, repo-relative path)] of every file path inside the image a manifest names."""
    prefix = image_workdir() + "/"
    return [(path.name, tok.removeprefix(prefix)) for path, doc in manifest_docs()
            for text in _strings(doc) for tok in shlex.split(text) if tok.startswith(prefix)]
