"""deploy/Dockerfile: an official Ray image whose Ray satisfies pyproject.toml, the project installed
from pyproject.toml itself (no second dependency list), and nothing secret baked in.
No Docker engine runs here: these tests read the file; building it is CI-with-Docker's job."""

from __future__ import annotations

import importlib.metadata
import re
import shlex
import tomllib

from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.version import Version

from deploy_files import REPO, base_image, dockerfile_args, dockerfile_instructions

PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
REQUIREMENTS = {Requirement(r).name: Requirement(r) for r in PYPROJECT["dependencies"]}
OPTIONS_WITH_VALUE = {"-c", "--constraint", "--extra-index-url", "--index-url", "-i", "-f", "--find-links"}


def install_segments() -> list[list[str]]:
    """Token lists of every `pip install ...` and `set -- ...` (arguments handed to pip as "$@") in RUN."""
    segments = []
    for keyword, text in dockerfile_instructions():
        if keyword != "RUN":
            continue
        lexer = shlex.shlex(text, posix=True, punctuation_chars=";&|")
        lexer.whitespace_split = True
        current: list[str] = []
        for tok in [*lexer, ";"]:
            if tok in (";", "&&", "||", "|"):
                words = [w for w in current if w not in ("then", "do", "else", "fi", "done")]
                if words[:2] in (["pip", "install"], ["set", "--"]) or words[:4] == ["python", "-m", "pip", "install"]:
                    segments.append(words[words.index("install") + 1 if "install" in words else 2:])
                current = []
            else:
                current.append(tok)
    return segments


def test_base_image_is_official_ray_with_a_ray_that_pyproject_accepts():
    image = base_image()
    m = re.fullmatch(r"rayproject/ray:(\d+\.\d+\.\d+)-py(\d)(\d+)-(cpu|gpu|cu\d+)", image)
    assert m, image
    assert REQUIREMENTS["ray"].specifier.contains(Version(m.group(1))), (image, str(REQUIREMENTS["ray"]))
    assert SpecifierSet(PYPROJECT["requires-python"]).contains(Version(f"{m.group(2)}.{m.group(3)}"))
    assert dockerfile_args()["VARIANT"] == "cpu"  # the GPU image is the same file with VARIANT=gpu


def test_installs_the_project_from_pyproject_and_nothing_else():
    segments = install_segments()
    installed, constraints = [], []
    for seg in segments:
        it = iter(seg)
        for tok in it:
            if tok in OPTIONS_WITH_VALUE:
                (constraints if tok in ("-c", "--constraint") else []).append(next(it))
            elif tok in ("-r", "--requirement") or tok.startswith("-r"):
                raise AssertionError(f"the image installs a requirements file: {seg}")
            elif not tok.startswith("-") and tok != "$@":
                installed.append(tok)
    assert installed == ["."], f"the image must install only the project itself ('.'), got {installed}"
    copied = " ".join(a for k, a in dockerfile_instructions() if k == "COPY")
    assert "pyproject.toml" in copied
    # Constraints only pin versions (CPU torch, the tested set): each pin agrees with pyproject's range
    # for a package it lists, and names a package the project's install really pulls in otherwise.
    assert constraints == ["constraints/cpu.txt"]
    for line in (REPO / constraints[0]).read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            pin = Requirement(line)
            (version,) = [s.version for s in pin.specifier]
            if pin.name in REQUIREMENTS:
                assert REQUIREMENTS[pin.name].specifier.contains(Version(version)), (str(pin), str(REQUIREMENTS[pin.name]))
            else:
                assert importlib.metadata.version(pin.name), f"constraint on a package nothing installs: {pin}"


def test_no_credentials_in_the_image():
    for keyword, text in dockerfile_instructions():
        if keyword in ("ENV", "ARG"):
            assert not re.search(r"KEY|SECRET|TOKEN|PASSWORD|CREDENTIAL", text, re.I), text
