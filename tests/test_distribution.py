"""What a store server installs from: the sdist and the wheel built from it (``python -m
build``, as the dist workflow runs on every push) carry every file the program reads."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
DIST_WORKFLOW = ROOT / ".github" / "workflows" / "dist.yml"
# Package data the program opens at run time: init's file, email and alert templates, the
# ledger's migrations, the survey page's and the report's files.
PACKAGE_DATA = (
    "surveysync/data/*",
    "surveysync/templates/**/*.*",
    "surveysync/alerts/templates/*.*",
    "surveysync/ledger/migrations/*.py",
    "surveysync/ledger/migrations/*.mako",
    "surveysync/ledger/migrations/versions/*.py",
    "surveysync/web/static/*",
    "surveysync/report/page.html",
)


def _package_data() -> set[str]:
    shipped = ROOT / "src"
    found = {
        p.relative_to(shipped).as_posix()
        for pattern in PACKAGE_DATA
        for p in shipped.glob(pattern)
        if p.is_file() and "__pycache__" not in p.parts
    }
    assert "surveysync/data/surveysync.example.toml" in found
    assert any(name.startswith("surveysync/templates/en/") for name in found)
    return found


def test_the_sdist_and_its_wheel_carry_every_file_the_program_reads(tmp_path: Path) -> None:
    """``python -m build`` makes an sdist and, from it, a wheel; both hold the templates,
    migrations and example config, so a wheel copied to a store server runs as it is."""
    tree = tmp_path / "tree"  # a clean copy: no build/ or egg-info of an earlier build
    shutil.copytree(
        ROOT / "src", tree / "src", ignore=shutil.ignore_patterns("*.egg-info", "__pycache__")
    )
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, tree / name)
    dist = tmp_path / "dist"
    subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(dist), str(tree)],
        check=True,
        capture_output=True,
    )
    [sdist] = dist.glob("surveysync-*.tar.gz")
    [wheel] = dist.glob("surveysync-*-py3-none-any.whl")
    wanted = _package_data()
    in_wheel = set(zipfile.ZipFile(wheel).namelist())
    assert sorted(wanted - in_wheel) == []
    with tarfile.open(sdist) as archive:
        top = archive.getnames()[0].split("/")[0]
        in_sdist = {name.removeprefix(f"{top}/src/") for name in archive.getnames()}
        assert {f"{top}/pyproject.toml", f"{top}/README.md"} <= set(archive.getnames())
    assert sorted(wanted - in_sdist) == []


def _workflow() -> dict[Any, Any]:
    loaded = yaml.safe_load(DIST_WORKFLOW.read_text(encoding="utf-8"))
    assert isinstance(loaded, dict)
    return loaded


def test_every_push_builds_a_wheel_and_an_sdist_kept_as_artifacts() -> None:
    """The dist workflow runs on every push, builds with ``python -m build`` and uploads the
    .whl and the .tar.gz, failing when there are none; Windows then installs that wheel."""
    workflow = _workflow()
    triggers = workflow.get("on", workflow.get(True))  # YAML 1.1 reads a bare `on` as true
    assert "push" in triggers and (triggers["push"] or {}).get("branches") is None
    build = workflow["jobs"]["build"]["steps"]
    assert any("python -m build" in step.get("run", "") for step in build)
    [upload] = [s for s in build if s.get("uses", "").startswith("actions/upload-artifact")]
    assert "dist/*.whl" in upload["with"]["path"] and "dist/*.tar.gz" in upload["with"]["path"]
    assert upload["with"]["if-no-files-found"] == "error"
    windows = workflow["jobs"]["install-on-windows"]
    assert windows["runs-on"] == "windows-latest" and windows["needs"] == "build"
    runs = "\n".join(step.get("run", "") for step in windows["steps"])
    assert "pip install $wheel" in runs and "surveysync init" in runs


# --- the README's Windows section -------------------------------------------------------------


def _readme_section(title: str) -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    start = text.index(f"\n### {title}\n")
    return text[start : text.find("\n### ", start + 1)]


def test_the_readmes_sql_server_urls_say_what_the_driver_gets() -> None:
    """Each SQL Server URL of the README's Windows section, written in TOML as it says,
    reaches the driver as a named instance with Encrypt and TrustServerCertificate, and the
    ones without a login ask for Windows authentication."""
    import tomllib

    from sqlalchemy.dialects.mssql.pyodbc import MSDialect_pyodbc
    from sqlalchemy.engine import make_url

    urls = [
        line for line in _readme_section("Windows").splitlines() if line.startswith("mssql+")
    ]
    assert len(urls) == 3
    windows_logins = 0
    for url in urls:
        as_written = tomllib.loads(f"url = '{url}'")["url"]  # a literal string, as advised
        [connect], _ = MSDialect_pyodbc().create_connect_args(make_url(as_written))
        settings = {k.lower(): v for k, _, v in (p.partition("=") for p in connect.split(";"))}
        assert settings["server"] == r"POS-SERVER\SQLEXPRESS" and settings["database"] == "Ascend"
        assert settings["driver"] == "{ODBC Driver 18 for SQL Server}"
        assert settings["encrypt"] == "yes" and settings["trustservercertificate"] == "yes"
        if "uid" not in settings:
            assert settings["trusted_connection"].lower() == "yes"
            windows_logins += 1
    assert windows_logins == 2


def test_the_heartbeat_check_is_given_for_linux_and_in_powershell() -> None:
    """Monitoring shows the same 25-hour heartbeat check for both systems."""
    monitoring = _readme_section("Monitoring")
    assert "-mmin -1500" in monitoring and "```powershell" in monitoring
    assert "LastWriteTime -lt (Get-Date).AddMinutes(-1500)" in monitoring
    assert r"C:\ProgramData\surveysync\surveysync-data\heartbeat.json" in monitoring
