#!/usr/bin/env python3
"""`make audit` (run by .ci/run): pip-audit over the pinned requirements; fails on any known vulnerability
that .ci/audit-ignore.txt does not list (each listed one is explained in docs/reliability.md).

    python .ci/audit.py [--requirement FILE ...]   (default: the three requirements files)

pip-audit runs with its default service, PyPI's per-release vulnerability records, on the pins alone
(`--no-deps`: every line is pinned with ==; every file is named, since pip-audit does not follow a
requirements file's own `-r` line in this mode). Where a
release's record cannot be fetched (this project's machines reach PyPI through a mirror that serves each
project's JSON but not the per-release one), pip-audit skips the package; the script then reads the
project's JSON, whose `vulnerabilities` describe the latest release, and audits the pin with them when the
pin is that release. A pin older than the latest that neither source can audit is listed as unaudited (a
warning: failing on it would break CI at every upstream release). The service being unreachable is a
failure with a message that says so: an audit that did not run must not pass.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
IGNORE_FILE = ROOT / ".ci" / "audit-ignore.txt"
PROJECT_JSON = "https://pypi.org/pypi/{name}/json"
NOT_ON_PYPI = "not found on PyPI"


class AuditUnavailable(RuntimeError):
    """The vulnerability service could not be reached or answered nonsense: the audit did not happen."""


@dataclass
class Report:
    """What the audit found, package by package."""

    findings: list[str] = field(default_factory=list)  # "name==version: ID (fixed in ...)"
    ignored: list[str] = field(default_factory=list)
    clean: list[str] = field(default_factory=list)
    unaudited: list[str] = field(default_factory=list)


def ignored_ids(path: Path = IGNORE_FILE) -> set[str]:
    """Vulnerability IDs accepted after review: the first word of each non-comment line."""
    if not path.exists():
        return set()
    lines = (line.split("#", 1)[0].strip() for line in path.read_text().splitlines())
    return {line.split()[0] for line in lines if line}


def run_pip_audit(requirements: list[Path]) -> dict:
    """pip-audit's JSON report for the pins in the `requirements` files."""
    command = [
        sys.executable,
        "-m",
        "pip_audit",
        "--no-deps",
        "--disable-pip",
        "--progress-spinner",
        "off",
        "--format",
        "json",
    ]
    for path in requirements:
        command += ["--requirement", str(path)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    try:
        return json.loads(done.stdout)
    except json.JSONDecodeError:
        last = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise AuditUnavailable(f"pip-audit exited {done.returncode} without a report: {last}") from None


def fetch_project(name: str) -> dict:
    """PyPI's JSON for a project (its latest release and that release's vulnerabilities)."""
    try:
        with urllib.request.urlopen(PROJECT_JSON.format(name=name), timeout=60) as response:
            return json.load(response)
    except (urllib.error.URLError, TimeoutError, json.JSONDecodeError) as exc:
        raise AuditUnavailable(f"PyPI's JSON for {name} could not be read: {exc}") from None


def _describe(name: str, version: str, vuln: dict) -> str:
    ids = " / ".join([vuln["id"], *vuln.get("aliases", [])])
    fixed = ", ".join(vuln.get("fix_versions") or vuln.get("fixed_in") or [])  # pip-audit's / PyPI's key
    return f"{name}=={version}: {ids} ({f'fixed in {fixed}' if fixed else 'no fixed release yet'})"


def _record(report: Report, name: str, version: str, vulns: list[dict], ignore: set[str]) -> None:
    for vuln in vulns:
        ids = {vuln["id"], *vuln.get("aliases", [])}
        (report.ignored if ids & ignore else report.findings).append(_describe(name, version, vuln))
    if not vulns:
        report.clean.append(f"{name}=={version}")


def audit(pip_audit_report: dict, ignore: set[str], project: Callable[[str], dict] = fetch_project) -> Report:
    """Sort pip-audit's results, completing the packages it skipped from PyPI's project JSON."""
    report = Report()
    for dependency in pip_audit_report.get("dependencies", []):
        name, version = dependency["name"], dependency.get("version")
        if "skip_reason" not in dependency:
            _record(report, name, version, dependency.get("vulns", []), ignore)
            continue
        match = re.search(r"\(([^()]+)\)\s*$", dependency["skip_reason"])
        version = version or (match.group(1) if match else "?")
        if NOT_ON_PYPI not in dependency["skip_reason"]:
            report.unaudited.append(f"{name}=={version}: {dependency['skip_reason']}")
            continue
        data = project(name)
        latest = data.get("info", {}).get("version")
        if latest == version and "vulnerabilities" in data:
            _record(report, name, version, data["vulnerabilities"], ignore)
        else:
            report.unaudited.append(f"{name}=={version}: no per-release record here, and the latest is {latest}")
    if not (report.clean or report.findings or report.ignored):
        raise AuditUnavailable("no package could be audited")
    return report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--requirement", type=Path, action="append", dest="requirements", help="a pinned requirements file; repeatable"
    )
    args = parser.parse_args()
    requirements = args.requirements or [
        ROOT / "requirements-serve.txt",
        ROOT / "requirements.txt",
        ROOT / "requirements-dev.txt",
    ]
    try:
        report = audit(run_pip_audit(requirements), ignored_ids())
    except AuditUnavailable as exc:
        print(
            f"audit: FAILED: the vulnerability service could not be used, so nothing was audited: {exc}",
            file=sys.stderr,
        )
        return 2
    print(f"audit: {len(report.clean)} pinned packages with no known vulnerability: {', '.join(report.clean)}")
    for title, lines in (
        ("accepted (listed in .ci/audit-ignore.txt, explained in docs/reliability.md)", report.ignored),
        ("unaudited (warning)", report.unaudited),
        ("VULNERABLE", report.findings),
    ):
        if lines:
            print(f"audit: {title}:\n  " + "\n  ".join(lines))
    if report.findings:
        print(
            "audit: FAILED: upgrade the pins above, or review each finding and list its ID in "
            ".ci/audit-ignore.txt with the reason in docs/reliability.md",
            file=sys.stderr,
        )
        return 1
    print("audit: passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
