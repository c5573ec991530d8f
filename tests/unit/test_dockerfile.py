"""The Dockerfile stays in step with pyproject.toml and the README (no container engine needed)."""

from __future__ import annotations

import json
import re
import shlex
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "Dockerfile"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with continuation lines joined and comments dropped."""
    result: list[tuple[str, str]] = []
    pending = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = pending + line
        pending = ""
        keyword, _, rest = line.partition(" ")
        result.append((keyword.upper(), rest.strip()))
    return result


def only(keyword: str) -> str:
    values = [rest for key, rest in instructions() if key == keyword]
    assert len(values) == 1, f"expected one {keyword} in the Dockerfile, found {values}"
    return values[0]


def pyproject() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def image_python() -> tuple[int, int]:
    """The Python version of the final base image, from its official tag (python:X.Y[-variant])."""
    image = only("FROM").split()[0]
    match = re.fullmatch(r"(?:docker\.io/)?(?:library/)?python:(\d+)\.(\d+)(?:-[\w.-]+)?", image)
    assert match, f"base image {image!r} is not an official python:X.Y image"
    return int(match.group(1)), int(match.group(2))


def python_floor() -> tuple[int, int]:
    spec = pyproject()["project"]["requires-python"]
    floors = re.findall(r">=\s*(\d+)\.(\d+)", spec)
    assert len(floors) == 1, f"requires-python {spec!r} should have one >= floor"
    return int(floors[0][0]), int(floors[0][1])


def satisfies(version: tuple[int, int], spec: str) -> bool:
    """Whether X.Y meets a simple requires-python specifier (clauses with >=, >, <=, <, ==, !=)."""
    for clause in filter(None, (part.strip() for part in spec.split(","))):
        match = re.fullmatch(r"(>=|<=|==|!=|>|<)\s*(\d+)\.(\d+)(?:\.\*|\.\d+)?", clause)
        assert match, f"unsupported requires-python clause {clause!r}"
        op, bound = match.group(1), (int(match.group(2)), int(match.group(3)))
        ok = {">=": version >= bound, ">": version > bound, "<=": version <= bound, "<": version < bound,
              "==": version == bound, "!=": version != bound}[op]
        if not ok:
            return False
    return True


def readme_install_command() -> str:
    """The first pip install in the README, without the virtual environment's path: ``pip install .``."""
    for line in (REPO / "README.md").read_text().splitlines():
        for part in line.split("&&"):
            words = shlex.split(part)
            if len(words) >= 2 and Path(words[0]).name == "pip" and words[1] == "install":
                return shlex.join(["pip", *words[1:]])
    pytest.fail("README.md has no pip install command", pytrace=False)


def test_satisfies_reads_specifiers():
    assert satisfies((3, 11), ">=3.10")
    assert satisfies((3, 10), ">=3.10,<4.0")
    assert not satisfies((3, 9), ">=3.10")
    assert not satisfies((3, 12), ">=3.10, !=3.12")


def test_base_image_python_satisfies_requires_python():
    spec = pyproject()["project"]["requires-python"]
    assert satisfies(image_python(), spec), f"the image's Python {image_python()} does not meet {spec!r}"


def test_base_image_python_is_the_requires_python_floor():
    """The image runs the oldest Python the project supports, so building it checks that floor."""
    assert image_python() == python_floor()


def test_install_command_is_the_readmes():
    command = readme_install_command()
    assert command == "pip install .", f"the README's first install command changed: {command!r}"
    runs = [rest for key, rest in instructions() if key == "RUN"]
    assert command in runs, f"no 'RUN {command}' in the Dockerfile (RUN lines: {runs})"


def test_build_context_has_what_pip_install_needs():
    """COPY brings pyproject.toml, its readme and the package into the directory pip installs from."""
    copied = set()
    for key, rest in instructions():
        if key == "COPY":
            *sources, _target = rest.split()
            copied.update(source.rstrip("/") for source in sources if not source.startswith("--"))
    assert {"pyproject.toml", pyproject()["project"]["readme"], "mpifarmer"} <= copied, copied
    assert all((REPO / source).exists() for source in copied), copied


def test_entrypoint_is_the_console_script():
    assert "mpifarmer" in pyproject()["project"]["scripts"]
    assert json.loads(only("ENTRYPOINT")) == ["mpifarmer"]
    assert json.loads(only("CMD")) == ["--help"]
