"""Deployment files: the systemd unit, the WinSW service, the Dockerfile and the CI workflow."""

from __future__ import annotations

import json
import re
import shlex
import xml.etree.ElementTree as ET
from datetime import timedelta
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
UNIT = ROOT / "config" / "surveysync.service"
WEB_UNIT = ROOT / "config" / "surveysync-web.service"
WINSW = ROOT / "config" / "windows" / "surveysync-service.xml"
WEB_WINSW = ROOT / "config" / "windows" / "surveysync-web-service.xml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
WORKFLOW = ROOT / ".github" / "workflows" / "ci.yml"

CLEAN_STOP = timedelta(seconds=30)  # `surveysync run` stops within this after a stop signal
WEB_CLEAN_STOP = timedelta(seconds=10)  # `surveysync web` finishes its requests within this


# --- systemd ------------------------------------------------------------------------------


def parse_unit(text: str) -> dict[str, dict[str, list[str]]]:
    """Sections of a systemd unit file, each key with every value it was given, in order."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    for raw in text.replace("\\\n", " ").splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        assert current is not None, f"setting outside a section: {line!r}"
        assert "=" in line, f"not a key=value line: {line!r}"
        key, value = line.split("=", 1)
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def systemd_seconds(value: str) -> float:
    """A systemd time span such as `45`, `45s`, `1min 30s` or `2m`, in seconds."""
    units = {"": 1, "s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "hr": 3600}
    total = 0.0
    for number, unit in re.findall(r"(\d+(?:\.\d+)?)\s*([a-z]*)", value):
        total += float(number) * units[unit]
    return total


@pytest.fixture(scope="module")
def unit() -> dict[str, dict[str, list[str]]]:
    return parse_unit(UNIT.read_text(encoding="utf-8"))


def one(unit: dict[str, dict[str, list[str]]], section: str, key: str) -> str:
    values = unit[section].get(key)
    assert values, f"[{section}] {key}= is missing"
    return values[-1]


def test_systemd_unit_runs_the_daemon_as_its_own_user(
    unit: dict[str, dict[str, list[str]]],
) -> None:
    """The service starts `surveysync run` as the unprivileged surveysync user, never as root."""
    assert set(unit) >= {"Unit", "Service", "Install"}
    assert one(unit, "Service", "Type") == "simple"
    assert one(unit, "Service", "User") == "surveysync"
    assert one(unit, "Service", "Group") == "surveysync"
    assert one(unit, "Service", "ExecStart").endswith("/bin/surveysync run")
    assert one(unit, "Service", "WorkingDirectory") == "/var/lib/surveysync"
    assert "SURVEYSYNC_CONFIG=/etc/surveysync/surveysync.toml" in unit["Service"]["Environment"]
    assert one(unit, "Install", "WantedBy") == "multi-user.target"


def test_systemd_unit_restarts_after_a_crash_and_waits_for_the_clean_stop(
    unit: dict[str, dict[str, list[str]]],
) -> None:
    """A crash is followed by a restart, and `systemctl stop` never kills a stop in progress."""
    assert one(unit, "Service", "Restart") == "on-failure"
    assert systemd_seconds(one(unit, "Service", "RestartSec")) > 0
    assert one(unit, "Service", "KillSignal") == "SIGTERM"
    stop = systemd_seconds(one(unit, "Service", "TimeoutStopSec"))
    assert stop >= CLEAN_STOP.total_seconds()


def test_systemd_unit_is_hardened(unit: dict[str, dict[str, list[str]]]) -> None:
    """The service can write only its state and log folders and can gain no privilege."""
    service = {key: values[-1] for key, values in unit["Service"].items()}
    for key in (
        "NoNewPrivileges",
        "ProtectHome",
        "PrivateTmp",
        "PrivateDevices",
        "ProtectKernelTunables",
        "ProtectKernelModules",
        "ProtectKernelLogs",
        "ProtectControlGroups",
        "RestrictNamespaces",
        "LockPersonality",
        "MemoryDenyWriteExecute",
    ):
        assert service.get(key) == "yes", f"{key}= should be yes"
    assert service["ProtectSystem"] == "strict"
    assert service["SystemCallArchitectures"] == "native"
    assert service["CapabilityBoundingSet"] == ""
    assert set(service["RestrictAddressFamilies"].split()) == {"AF_UNIX", "AF_INET", "AF_INET6"}
    writable = set(service["ReadWritePaths"].split())
    assert {"/var/lib/surveysync", "/var/log/surveysync"} <= writable
    assert service["StateDirectory"] == "surveysync"
    assert service["LogsDirectory"] == "surveysync"


def test_the_survey_page_unit_runs_beside_the_daemon_with_the_same_hardening(
    unit: dict[str, dict[str, list[str]]],
) -> None:
    """surveysync-web.service starts `surveysync web` as the same user, in the same
    directory with the same config (so a SQLite ledger is the same file), hardened alike,
    restarting after a crash and given time for its clean stop."""
    web = parse_unit(WEB_UNIT.read_text(encoding="utf-8"))
    assert one(web, "Service", "ExecStart").endswith("/bin/surveysync web")
    for key in ("User", "Group", "WorkingDirectory", "StateDirectory", "LogsDirectory"):
        assert one(web, "Service", key) == one(unit, "Service", key), key
    assert web["Service"]["Environment"] == unit["Service"]["Environment"]
    daemon = {key: values[-1] for key, values in unit["Service"].items()}
    page = {key: values[-1] for key, values in web["Service"].items()}
    hardening = [
        key
        for key in daemon
        if key.startswith(("Protect", "Private", "Restrict", "NoNew", "Lock", "Memory"))
        or key in ("SystemCallArchitectures", "CapabilityBoundingSet", "ReadWritePaths", "UMask")
    ]
    assert len(hardening) >= 15
    for key in hardening:
        assert page.get(key) == daemon[key], f"{key}= differs from the daemon's"
    assert one(web, "Service", "Restart") == "on-failure"
    assert one(web, "Service", "RestartPreventExitStatus") == "2"
    assert systemd_seconds(one(web, "Service", "TimeoutStopSec")) > WEB_CLEAN_STOP.total_seconds()
    assert one(web, "Install", "WantedBy") == "multi-user.target"


# --- Windows (WinSW) ----------------------------------------------------------------------


def winsw_timespan(value: str) -> timedelta:
    """A WinSW duration such as `45 sec`, `5 min` or `1 day` (no suffix: milliseconds)."""
    units = {
        "ms": timedelta(milliseconds=1),
        "sec": timedelta(seconds=1),
        "min": timedelta(minutes=1),
        "hour": timedelta(hours=1),
        "day": timedelta(days=1),
    }
    match = re.fullmatch(r"\s*(\d+)\s*(ms|sec|min|hour|day)?s?\s*", value)
    assert match, f"not a WinSW duration: {value!r}"
    return int(match[1]) * units[match[2] or "ms"]


@pytest.fixture(scope="module")
def winsw() -> ET.Element:
    root = ET.parse(WINSW).getroot()
    assert root.tag == "service"
    return root


def text_of(root: ET.Element, tag: str) -> str:
    element = root.find(tag)
    assert element is not None, f"<{tag}> is missing"
    return (element.text or "").strip()


def test_winsw_service_runs_the_daemon_with_the_programdata_config(winsw: ET.Element) -> None:
    """The Windows service starts `surveysync --config ... run` from the virtual environment."""
    assert re.fullmatch(r"[A-Za-z0-9]+", text_of(winsw, "id"))
    assert text_of(winsw, "executable").lower().endswith(r"\scripts\surveysync.exe")
    arguments = shlex.split(text_of(winsw, "arguments"))
    assert arguments[-1] == "run"
    assert arguments[:2] == ["--config", r"C:\ProgramData\surveysync\surveysync.toml"]
    assert text_of(winsw, "workingdirectory") == r"C:\ProgramData\surveysync"


def test_winsw_service_waits_for_the_clean_stop_and_restarts_after_a_crash(
    winsw: ET.Element,
) -> None:
    """Stopping the service never kills a stop in progress, and a crash is followed by a restart."""
    assert winsw_timespan(text_of(winsw, "stoptimeout")) >= CLEAN_STOP
    failures = winsw.findall("onfailure")
    assert failures, "no <onfailure>: a crashed service would stay stopped"
    assert all(f.get("action") == "restart" for f in failures)
    for failure in failures:
        winsw_timespan(failure.get("delay", "0"))
    log = winsw.find("log")
    assert log is not None and log.get("mode") == "roll-by-size"


def test_winsw_runs_the_survey_page_as_a_second_service(winsw: ET.Element) -> None:
    """surveysync-web-service.xml starts `surveysync --config ... web` from the same virtual
    environment and directory as the daemon, under its own service name."""
    web = ET.parse(WEB_WINSW).getroot()
    assert re.fullmatch(r"[A-Za-z0-9]+", text_of(web, "id"))
    assert text_of(web, "id") != text_of(winsw, "id")
    assert text_of(web, "executable") == text_of(winsw, "executable")
    arguments = shlex.split(text_of(web, "arguments"))
    assert arguments == [*shlex.split(text_of(winsw, "arguments"))[:-1], "web"]
    assert text_of(web, "workingdirectory") == text_of(winsw, "workingdirectory")
    assert winsw_timespan(text_of(web, "stoptimeout")) > WEB_CLEAN_STOP
    failures = web.findall("onfailure")
    assert failures and all(f.get("action") == "restart" for f in failures)


# --- Docker -------------------------------------------------------------------------------


def dockerfile_stages(text: str) -> list[list[tuple[str, str]]]:
    """The Dockerfile's stages, each a list of (INSTRUCTION, arguments)."""
    stages: list[list[tuple[str, str]]] = []
    logical = re.sub(
        r"\\\n",
        " ",
        "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#")),
    )
    for line in logical.splitlines():
        if not line.strip():
            continue
        instruction, _, arguments = line.strip().partition(" ")
        if instruction.upper() == "FROM":
            stages.append([])
        assert stages, f"instruction before FROM: {line!r}"
        stages[-1].append((instruction.upper(), " ".join(arguments.split())))
    return stages


def test_docker_image_runs_the_daemon_as_a_non_root_user_and_stops_cleanly() -> None:
    """`docker run surveysync` starts the daemon as uid 10001 and `docker stop` sends SIGTERM."""
    final = dockerfile_stages(DOCKERFILE.read_text(encoding="utf-8"))[-1]
    settings = dict(final)
    assert settings["FROM"].startswith("python:3.11-slim")
    users = [arguments for instruction, arguments in final if instruction == "USER"]
    assert users and users[-1] not in {"root", "0", "0:0"}
    assert settings["STOPSIGNAL"] == "SIGTERM"
    assert "/var/lib/surveysync" in json.loads(settings["VOLUME"])
    assert settings["WORKDIR"] == "/var/lib/surveysync"
    assert json.loads(settings["ENTRYPOINT"]) == ["surveysync"]
    assert json.loads(settings["CMD"]) == ["run"]
    assert "surveysync status --json" in settings["HEALTHCHECK"]
    env = " ".join(arguments for instruction, arguments in final if instruction == "ENV").split()
    assert "SURVEYSYNC_CONFIG=/etc/surveysync/surveysync.toml" in env


def test_docker_build_context_holds_what_pip_install_needs() -> None:
    """`docker build` fails early if .dockerignore leaves out a file the image is built from."""
    patterns = [
        line.strip()
        for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    stages = dockerfile_stages(DOCKERFILE.read_text(encoding="utf-8"))
    sources = [
        source.rstrip("/")
        for stage in stages
        for instruction, arguments in stage
        if instruction == "COPY" and "--from" not in arguments
        for source in arguments.split()[:-1]
    ]
    assert {"pyproject.toml", "README.md", "src"} <= set(sources)  # pyproject names the README
    for source in sources:
        if patterns and patterns[0] == "*":
            assert f"!{source}" in patterns or f"!{source}/" in patterns, source
        else:
            assert source not in patterns, source


# --- CI workflow --------------------------------------------------------------------------


def workflow_jobs(text: str) -> dict[str, str]:
    """Each job of the workflow (keys indented two spaces under `jobs:`) as its text."""
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    start = lines.index("jobs:") + 1
    jobs: dict[str, list[str]] = {}
    name = None
    for line in lines[start:]:
        if line and not line.startswith(" "):
            break
        match = re.fullmatch(r"  ([A-Za-z0-9_-]+):\s*", line)
        if match:
            name = match[1]
            jobs[name] = []
        elif name is not None:
            jobs[name].append(line)
    return {job: "\n".join(body) for job, body in jobs.items()}


def test_ci_runs_on_linux_with_servers_and_on_windows_without() -> None:
    """CI checks every push on Linux (requiring PostgreSQL) and on Windows (skipping it)."""
    text = WORKFLOW.read_text(encoding="utf-8")
    assert re.search(r"^on:\s*\n(?:\s+.*\n)*?\s+push:", text, re.MULTILINE)
    assert re.search(r"^on:\s*\n(?:\s+.*\n)*?\s+pull_request:", text, re.MULTILINE)
    jobs = workflow_jobs(text)
    assert {"linux", "windows"} <= set(jobs)

    linux, windows = jobs["linux"], jobs["windows"]
    assert "runs-on: ubuntu-latest" in linux
    assert "image: postgres:15" in linux and "image: mariadb:10.11" in linux
    assert re.search(r"SURVEYSYNC_REQUIRE_SERVICES:\s*[\"']?1", linux)
    assert ".venv/bin/python -m pytest" in linux

    assert "runs-on: windows-latest" in windows
    assert "SURVEYSYNC_REQUIRE_SERVICES" not in windows
    assert r".venv\Scripts\python -m pytest" in windows
    for job in (linux, windows):
        assert 'python-version: "3.11"' in job
        assert "ruff check src tests benchmarks" in job
        assert "mypy" in job


# --- the installed package -----------------------------------------------------------------


def test_a_built_wheel_carries_every_file_the_program_reads(tmp_path: Path) -> None:
    """A normal (non-editable) install has the example config `init` writes, every template
    and every migration, not only the Python modules."""
    import shutil
    import subprocess
    import sys
    import zipfile

    # From a clean copy: a build/ folder left by an earlier build would hide a missing file.
    tree = tmp_path / "tree"
    shutil.copytree(
        ROOT / "src", tree / "src", ignore=shutil.ignore_patterns("*.egg-info", "__pycache__")
    )
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, tree / name)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(tmp_path), str(tree)],
        check=True,
        capture_output=True,
    )  # fmt: skip
    [wheel] = tmp_path.glob("surveysync-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    shipped = ROOT / "src"
    wanted = [
        p.relative_to(shipped).as_posix()
        for pattern in ("surveysync/data/*", "surveysync/templates/**/*.*",
                        "surveysync/alerts/templates/*.*",
                        "surveysync/ledger/migrations/versions/*.py")
        for p in shipped.glob(pattern)
    ]  # fmt: skip
    assert "surveysync/data/surveysync.example.toml" in wanted
    assert sorted(set(wanted) - names) == []


# SHA-256 of the providers' specifications as published in the project's shared specs folder.
PUBLISHED_SPECS = {
    "sendgrid-v3-openapi.json": "c45d875c25227e2b36ca614b346936e2626c7bcc690a721806fdf4ec96105339",
    "resend-openapi.yaml": "636624a01ce2009c9034fe4bf3cb2f3d30b0f9077784c017022a65a24f1a80dc",
}


def test_the_vendored_provider_specs_are_the_published_ones() -> None:
    """The copies the request bodies are validated against are the providers' published
    specifications, byte for byte; where the shared folder sits beside this clone, it holds
    the same files."""
    import hashlib

    shared = ROOT.parent / "shared" / "specs"
    for name, digest in PUBLISHED_SPECS.items():
        vendored = (ROOT / "tests" / "specs" / name).read_bytes()
        assert hashlib.sha256(vendored).hexdigest() == digest, name
        if shared.is_dir():
            assert (shared / name).read_bytes() == vendored, name
