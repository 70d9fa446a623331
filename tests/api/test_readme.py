"""Every command the README shows must parse with the real CLI, so documentation cannot drift from the code."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import pytest

from shopsearch.api.cli import build_parser

README = Path(__file__).resolve().parents[2] / "README.md"


def _bash_lines() -> list[str]:
    blocks = re.findall(r"```bash\n(.*?)```", README.read_text(), flags=re.S)
    lines, pending = [], ""
    for block in blocks:
        for raw in block.splitlines():
            line = raw.split("  #")[0].rstrip()
            if line.endswith("\\"):
                pending += line[:-1] + " "
                continue
            lines.append((pending + line).strip())
            pending = ""
    return [ln for ln in lines if ln]


SHOPSEARCH = [ln for ln in _bash_lines() if ln.startswith("shopsearch ")]
RUN = [ln for ln in _bash_lines() if ln.startswith("./run ")]
CURL = [ln for ln in _bash_lines() if ln.startswith("curl ")]


def test_readme_opens_with_the_two_commands():
    first_block = re.search(r"```bash\n(.*?)```", README.read_text(), flags=re.S).group(1)
    assert [ln.split("#")[0].strip() for ln in first_block.strip().splitlines()] == ["./run demo", "./run test"]


@pytest.mark.parametrize("line", SHOPSEARCH)
def test_documented_command_parses(line):
    args = build_parser().parse_args(shlex.split(line)[1:])  # SystemExit(2) on an unknown command or option
    assert callable(args.run)


def test_run_script_commands_exist():
    # ./run passes anything but "test" straight to the shopsearch command.
    for line in RUN:
        words = shlex.split(line)[1:]
        if words[0] != "test":
            assert callable(build_parser().parse_args(words).run)


@pytest.mark.parametrize("line", CURL)
def test_documented_request_is_in_the_api_spec(line):
    from shopsearch.api.openapi import openapi_spec
    from shopsearch.settings import load_settings

    url = urlsplit(shlex.split(line)[1])
    spec = openapi_spec(load_settings(environ={}))
    op = spec["paths"][url.path]["get"]
    allowed = {p["name"] for p in op.get("parameters", [])}
    assert {k for k, _ in parse_qsl(url.query)} <= allowed
