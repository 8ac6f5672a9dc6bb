"""Every ``edgeops`` help page, found by walking the command tree: an example of that very
command (which parses), the exit codes, readable metavars (NAME, FILE, ...) and no Typer type
labels (``<path>``, ``<list[str]>``, ``{bundle_dir}``), lines that fit 80 columns."""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator
from typing import Any

import pytest
import typer.main
from typer.core import TyperArgument, TyperGroup, TyperOption
from typer.testing import CliRunner

from edgeops.cli import app

ROOT = typer.main.get_command(app)
#: Typer's type labels and usage braces: noise where a metavar says it better
NOISE = re.compile(r"<[a-z][a-z_\[\]|,.]*>|\bLIST\[|\{[a-z_]+\}|\[\[")
METAVAR = re.compile(r"^[A-Z][A-Z_]*$")
#: help pages without "Exit codes:": groups that only hold commands, and the two that only print
NO_EXIT_CODES = {
    "edgeops version",
    "edgeops completion",
    "edgeops schema",
    "edgeops keys",
    "edgeops bundle",
    "edgeops edge",
}
#: what separates commands on an example line; what follows ">" is a file, not an argument
SEPARATORS = {"|", "&&", "||", ";"}


def _walk(cmd: Any, path: tuple[str, ...]) -> Iterator[tuple[str, Any]]:
    yield " ".join(path), cmd
    if isinstance(cmd, TyperGroup):
        for name, sub in cmd.commands.items():
            yield from _walk(sub, (*path, name))


COMMANDS = dict(_walk(ROOT, ("edgeops",)))


def help_text(path: str) -> str:
    result = CliRunner().invoke(app, [*path.split()[1:], "--help"])
    assert result.exit_code == 0, result.output
    return result.stdout


def examples(text: str) -> list[list[str]]:
    """The ``edgeops ...`` commands in the text's Example(s) sections, as argument lists."""
    found = []
    for section in re.findall(r"Examples?:(.*?)(?:\n[ \t]*\n|\Z)", text, re.S):
        for line in re.sub(r"\\\n\s*", " ", section).strip().splitlines():
            words: list[str] = []
            for token in [*shlex.split(line, comments=True), ";"]:
                if token in SEPARATORS:
                    while words and re.match(r"^[A-Z_]+=", words[0]):  # VAR=value edgeops ...
                        words.pop(0)
                    if words and words[0] == "edgeops":
                        found.append(words[1 : words.index(">")] if ">" in words else words[1:])
                    words = []
                else:
                    words.append(token)
    return found


def test_the_tree_has_every_command() -> None:
    names = set(COMMANDS)
    assert {"edgeops", "edgeops deploy", "edgeops status", "edgeops monitor ui"} <= names
    assert {"edgeops schema infer", "edgeops completion", "edgeops edge serve"} <= names
    assert len(names) >= 24


@pytest.mark.parametrize("path", sorted(COMMANDS))
def test_help_page(path: str) -> None:
    text = help_text(path)
    assert re.search(r"\bExamples?:", text), f"`{path} --help` shows no example"
    runs = examples(text)
    assert any(" ".join(["edgeops", *args]).startswith(path) for args in runs), (
        f"`{path} --help`: no example of {path} itself in {runs}"
    )
    if path not in NO_EXIT_CODES:
        assert "Exit codes:" in text, f"`{path} --help` does not list its exit codes"
    assert not NOISE.search(text), f"`{path} --help`: {NOISE.findall(text)}"
    wide = [line for line in text.splitlines() if len(line) > 80]
    assert not wide, f"`{path} --help` has lines over 80 columns: {wide}"


@pytest.mark.parametrize("path", sorted(COMMANDS))
def test_examples_parse(path: str) -> None:
    """Every example names real commands and options, with values of the right type."""
    for args in examples(help_text(path)):
        cmd, name = ROOT, "edgeops"
        while isinstance(cmd, TyperGroup) and args and args[0] in cmd.commands:
            name, cmd, args = args[0], cmd.commands[args[0]], args[1:]
        if "--help" in args:
            continue
        cmd.make_context(name, list(args))  # raises a UsageError on an unknown option


@pytest.mark.parametrize("path", sorted(COMMANDS))
def test_values_have_readable_metavars(path: str) -> None:
    for param in COMMANDS[path].params:
        if isinstance(param, TyperOption) and not param.is_flag:
            assert param.metavar and METAVAR.match(param.metavar), (path, param.opts)
        if isinstance(param, TyperArgument):
            assert param.metavar and METAVAR.match(param.metavar), (path, param.name)
