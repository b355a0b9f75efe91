"""The README and the code say the same thing: every command and each of its options, and the
library's public names (sqlite-utils' ``test_docs.py`` habit)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import click
import pytest

import surveysync
from surveysync.cli import main

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text("utf-8")


def _section(title: str) -> str:
    start = README.index(f"\n## {title}\n")
    end = README.find("\n## ", start + 1)
    return README[start : end if end != -1 else None]


def _commands(group: click.Group, prefix: str = "") -> list[tuple[str, click.Command]]:
    found: list[tuple[str, click.Command]] = []
    for name, command in sorted(group.commands.items()):
        if isinstance(command, click.Group):
            found.extend(_commands(command, f"{prefix}{name} "))
        else:
            found.append((f"{prefix}{name}", command))
    return found


@pytest.mark.parametrize(("name", "command"), _commands(main), ids=lambda v: str(v))
def test_every_option_of_every_command_is_in_the_readme_commands_table(
    name: str, command: click.Command
) -> None:
    """An admin reading the Commands table finds each command and every option it takes."""
    rows = [line for line in _section("Commands").splitlines() if f"`surveysync {name}" in line]
    assert rows, f"`surveysync {name}` has no row in the README's Commands table"
    documented = " ".join(rows)
    for param in command.params:
        if isinstance(param, click.Option) and "--help" not in param.opts:
            flag = max(param.opts, key=len)
            assert flag in documented, f"`surveysync {name}` {flag} is not in the README"


def test_the_public_names_are_the_ones_the_readme_lists_and_each_resolves() -> None:
    """``surveysync.__all__`` and the README's library section name the same things."""
    listed = set(re.findall(r"^\| `(\w+)` \|", _section("Using it as a library"), re.MULTILINE))
    assert listed == set(surveysync.__all__)
    for name in surveysync.__all__:
        assert getattr(surveysync, name) is not None


def test_the_command_line_starts_without_the_database_or_network_layers() -> None:
    """`import surveysync.cli` (what `surveysync --help` costs) loads no SQLAlchemy, Alembic,
    httpx or Jinja, and not even the configuration's pydantic models, structlog or the email
    validator: each command imports the stages it needs when it runs."""
    code = (
        "import sys, surveysync.cli\n"
        "heavy = ('sqlalchemy', 'alembic', 'httpx', 'jinja2', 'pydantic', 'pydantic_settings',"
        " 'structlog', 'email_validator', 'apscheduler')\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & set(heavy)))\n"
    )
    found = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert found == "[]"
