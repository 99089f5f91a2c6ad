"""Typed dataclass configs with strict overrides from the command line and from files.

Every job declares one dataclass; `parse_cli(Config)` turns each field into a `--field-name` flag of
the field's type (a field that is itself a dataclass, e.g. `embed_pool: EmbedPool`, gives one flag
per inner field: `--embed-pool-actors`), and `--config FILE` (JSON or YAML) loads a base.
Unknown keys and wrong types are errors, never silently ignored. A flag's help is the field's
`metadata["help"]`, else the comment on the field's line (`name: int = 3  # what it does`), so the
comment per knob is its one home; `--help` shows the job's docstring (usage examples) verbatim.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import json
import os
import re
import sys
import tempfile
import traceback
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


def _unwrap_optional(tp: Any) -> tuple[Any, bool]:
    """Optional[X] / X | None -> (X, True)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1 and len(typing.get_args(tp)) == 2:
            return args[0], True
    return tp, False


def _coerce(name: str, tp: Any, value: Any) -> Any:
    """Check (and gently convert, e.g. int -> float) a value loaded from a file."""
    inner, optional = _unwrap_optional(tp)
    if value is None:
        if optional:
            return None
        raise TypeError(f"config key {name!r} may not be null")
    origin = typing.get_origin(inner)
    if origin in (list, tuple):
        (item_tp, *_) = typing.get_args(inner) or (Any,)
        if not isinstance(value, (list, tuple)):
            raise TypeError(f"config key {name!r} expects a list, got {value!r}")
        items = [_coerce(name, item_tp, v) for v in value]
        return list(items) if origin is list else tuple(items)
    if inner is Any:
        return value
    if dataclasses.is_dataclass(inner):  # a nested config: a mapping in a file, built (and checked) here
        if isinstance(value, inner):
            return value
        if not isinstance(value, dict):
            raise TypeError(f"config key {name!r} expects a mapping of {inner.__name__} keys, got {value!r}")
        return from_dict(inner, value)
    if inner is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if inner is bool and not isinstance(value, bool):
        raise TypeError(f"config key {name!r} expects true/false, got {value!r}")
    if not isinstance(value, inner) or (inner is int and isinstance(value, bool)):
        raise TypeError(f"config key {name!r} expects {inner.__name__}, got {value!r}")
    return value


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def check_choices(cfg: Any) -> None:
    """Every field with `metadata["choices"]` (each item, for a list) holds one of them."""
    for f in dataclasses.fields(cfg):
        choices = f.metadata.get("choices")
        value = getattr(cfg, f.name)
        if choices is None or value is None:
            continue
        for item in value if isinstance(value, (list, tuple)) else [value]:
            if item not in choices:
                raise ValueError(f"--{f.name.replace('_', '-')} must be one of {', '.join(map(str, choices))}; "
                                 f"got {item!r}")


def from_dict(cls: type[T], data: dict[str, Any]) -> T:
    """Build `cls` from a dict, rejecting unknown keys, wrong types and values outside a field's choices."""
    hints = _hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ValueError(f"unknown {cls.__name__} keys: {unknown}; known: {sorted(names)}")
    cfg = cls(**{k: _coerce(k, hints[k], v) for k, v in data.items()})
    check_choices(cfg)
    return cfg


def to_dict(cfg: Any) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def load_file(path: str | Path) -> dict[str, Any]:
    """JSON or YAML file (local path or URI) -> dict."""
    from sonar_ray import storage

    text = storage.read_bytes(str(path)).decode()
    if str(path).endswith((".yaml", ".yml")):
        import yaml

        data = yaml.safe_load(text) or {}
    else:
        data = json.loads(text)
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a config file must hold a mapping, got {type(data).__name__}")
    return data


def _flag_type(tp: Any):
    if tp is bool:
        return None
    return tp


_FIELD_COMMENT = re.compile(r"\s+(\w+)\s*:[^#]*#\s*(.+)$")


def field_help(cls: type) -> dict[str, str]:
    """Field name -> help text: `metadata["help"]`, else the comment on the field's line ("" if none)."""
    try:
        comments = {}
        for line in inspect.getsource(cls).splitlines():
            m = _FIELD_COMMENT.match(line)
            if m:
                comments.setdefault(m.group(1), m.group(2).strip())
    except (OSError, TypeError):  # no source (e.g. a class built at runtime)
        comments = {}
    return {f.name: f.metadata.get("help") or comments.get(f.name, "") for f in dataclasses.fields(cls)}


def _add_fields(parser, cls: type, prefix: str = "") -> None:
    hints, helps = _hints(cls), field_help(cls)
    for f in dataclasses.fields(cls):
        tp, optional = _unwrap_optional(hints[f.name])
        dest = prefix + f.name
        if dataclasses.is_dataclass(tp):
            group = parser.add_argument_group(f"--{dest.replace('.', '-').replace('_', '-')}-*", helps[f.name])
            _add_fields(group, tp, dest + ".")
            continue
        flag = "--" + dest.replace(".", "-").replace("_", "-")
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else None)
        shown = f.metadata.get("shown_default", repr(default))  # a knob left None shows what it becomes
        help_text = f"{helps[f.name]} (default: {shown})".replace("%", "%%")  # argparse %-formats help
        kwargs: dict[str, Any] = {"dest": dest, "default": argparse.SUPPRESS, "help": help_text}
        if tp is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        elif typing.get_origin(tp) in (list, tuple):
            (item_tp, *_) = typing.get_args(tp) or (str,)
            kwargs.update(nargs="*", type=item_tp)
        else:
            kwargs.update(type=tp, metavar=f.name.upper())  # not EMBED_POOL.ACTORS
        if "choices" in f.metadata:
            kwargs["choices"] = f.metadata["choices"]
        parser.add_argument(flag, **kwargs)


def build_parser(cls: type, description: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description or cls.__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="JSON/YAML file with a base config (CLI flags override it)")
    _add_fields(parser, cls)
    return parser


def _merge(base: dict[str, Any], flags: dict[str, Any]) -> dict[str, Any]:
    """A file's keys overridden by flags; a nested config's flags ("embed_pool.actors") override one inner key."""
    out = dict(base)
    for dest, value in flags.items():
        *outer, name = dest.split(".")
        node = out
        for key in outer:
            node[key] = node = dict(node.get(key) or {})
        node[name] = value
    return out


def parse_cli(cls: type[T], argv: list[str] | None = None, description: str | None = None) -> T:
    """Parse `argv` into `cls`: defaults < --config file < explicit flags. The file's keys and the flags
    are merged before `cls` is built, so its checks see what was given, not defaults already filled in."""
    parser = build_parser(cls, description)
    args = vars(parser.parse_args(argv))
    file_path = args.pop("config", None)
    return from_dict(cls, _merge(load_file(file_path) if file_path else {}, args))


def save(cfg: Any, path: str | Path) -> None:
    from sonar_ray import storage

    storage.write_bytes_atomic(str(path), json.dumps(to_dict(cfg), indent=2, sort_keys=True).encode())


# What a user can fix: a bad flag value or type, a missing input, an output that already holds a run.
USER_ERRORS = (ValueError, TypeError, FileNotFoundError, FileExistsError)


def run_job(main: Callable[[], Any], name: str) -> None:
    """Run a job's `main()`; a user error prints one line and the file holding its traceback, exit 2."""
    try:
        main()
    except USER_ERRORS as e:
        log = Path(tempfile.gettempdir()) / f"sonar-{name}-{os.getpid()}.log"
        log.write_text(traceback.format_exc())
        print(f"error: {e}  (traceback: {log})", file=sys.stderr, flush=True)
        raise SystemExit(2) from None
