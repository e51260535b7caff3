"""A small Dockerfile reader for the deploy tests: instructions with continuations joined, comments dropped."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"


def instructions(path: Path = DOCKERFILE) -> list[tuple[str, str]]:
    """[(INSTRUCTION, arguments)] in file order."""
    result: list[tuple[str, str]] = []
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):  # a comment inside a continued instruction
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        pending += line
        keyword, _, args = pending.partition(" ")
        result.append((keyword.upper(), args.strip()))
        pending = ""
    return result


def serving_stage(path: Path = DOCKERFILE) -> list[tuple[str, str]]:
    """The instructions of the last stage (from its FROM on): the image that is run."""
    steps = instructions(path)
    last_from = max(i for i, (name, _) in enumerate(steps) if name == "FROM")
    return steps[last_from:]


def all_of(keyword: str, path: Path = DOCKERFILE) -> list[str]:
    return [args for name, args in instructions(path) if name == keyword]


def exec_form(args: str) -> list[str]:
    """CMD/ENTRYPOINT arguments as an argv: the JSON exec form, or the shell form split like sh would."""
    if args.startswith("["):
        argv = json.loads(args)
        assert isinstance(argv, list) and all(isinstance(a, str) for a in argv), args
        return argv
    return shlex.split(args)


def cmd() -> list[str]:
    commands = all_of("CMD")
    assert commands, "Dockerfile has no CMD"
    return exec_form(commands[-1])


def env() -> dict[str, str]:
    """Variables the image sets with ENV (key=value form)."""
    values: dict[str, str] = {}
    for args in all_of("ENV"):
        for item in shlex.split(args):
            key, sep, value = item.partition("=")
            assert sep, f"ENV {args!r}: use the key=value form"
            values[key] = value
    return values


def ignore_patterns(path: Path = DOCKERIGNORE) -> list[str]:
    lines = (line.strip() for line in path.read_text().splitlines())
    return [line for line in lines if line and not line.startswith("#")]
