"""The dependency audit (.ci/audit.py, `make audit`, run by CI): its verdicts on made-up reports, and that
every accepted vulnerability is explained. The real audit needs PyPI, so CI runs it, not this test."""

from __future__ import annotations

import importlib.util
import re
import sys

import pytest

from tests.deploy.test_docs_commands import CI_RUN, ROOT, ci_commands, recipe

spec = importlib.util.spec_from_file_location("ci_audit", ROOT / ".ci" / "audit.py")
ci_audit = importlib.util.module_from_spec(spec)
sys.modules["ci_audit"] = ci_audit  # dataclasses look their module up there
spec.loader.exec_module(ci_audit)

VULN = {"id": "PYSEC-2099-1", "aliases": ["CVE-2099-0001"], "fix_versions": ["2.0"], "description": "bad"}


def no_project(name: str) -> dict:
    raise AssertionError(f"{name} was looked up though pip-audit audited it")


def skipped(name: str, version: str) -> dict:
    return {"name": name, "skip_reason": f"Dependency not found on PyPI and could not be audited: {name} ({version})"}


def test_clean_and_vulnerable_pins_from_pip_audit():
    report = ci_audit.audit(
        {
            "dependencies": [
                {"name": "a", "version": "1.0", "vulns": []},
                {"name": "b", "version": "1.0", "vulns": [VULN]},
            ]
        },
        set(),
        no_project,
    )
    assert report.clean == ["a==1.0"]
    assert report.findings == ["b==1.0: PYSEC-2099-1 / CVE-2099-0001 (fixed in 2.0)"]


@pytest.mark.parametrize("accepted", ["PYSEC-2099-1", "CVE-2099-0001"])
def test_a_reviewed_vulnerability_is_accepted_by_id_or_alias(accepted):
    report = ci_audit.audit(
        {"dependencies": [{"name": "b", "version": "1.0", "vulns": [VULN]}]}, {accepted}, no_project
    )
    assert not report.findings and len(report.ignored) == 1


def test_skipped_pins_are_audited_from_the_project_json_when_they_are_the_latest():
    pypi_record = {"id": "GHSA-xxxx", "aliases": [], "fixed_in": [], "details": "bad"}  # PyPI's own keys
    projects = {
        "latest": {"info": {"version": "3.0"}, "vulnerabilities": [pypi_record]},
        "older": {"info": {"version": "9.0"}, "vulnerabilities": []},
    }
    report = ci_audit.audit(
        {"dependencies": [skipped("latest", "3.0"), skipped("older", "1.0")]}, set(), projects.__getitem__
    )
    assert report.findings == ["latest==3.0: GHSA-xxxx (no fixed release yet)"]
    assert report.unaudited == ["older==1.0: no per-release record here, and the latest is 9.0"]


def test_an_audit_that_audited_nothing_fails():
    projects = {"older": {"info": {"version": "9.0"}, "vulnerabilities": []}}
    with pytest.raises(ci_audit.AuditUnavailable, match="no package could be audited"):
        ci_audit.audit({"dependencies": [skipped("older", "1.0")]}, set(), projects.__getitem__)


def test_unreachable_service_fails_with_a_clear_message(monkeypatch, capsys):
    def unreachable(requirements):
        raise ci_audit.AuditUnavailable("pip-audit exited 1 without a report: ConnectionError")

    monkeypatch.setattr(ci_audit, "run_pip_audit", unreachable)
    monkeypatch.setattr("sys.argv", ["audit.py"])
    assert ci_audit.main() == 2
    assert "could not be used, so nothing was audited" in capsys.readouterr().err


def test_findings_fail_the_run(monkeypatch, capsys):
    monkeypatch.setattr(
        ci_audit,
        "run_pip_audit",
        lambda requirements: {"dependencies": [{"name": "b", "version": "1.0", "vulns": [VULN]}]},
    )
    monkeypatch.setattr(ci_audit, "ignored_ids", lambda: set())
    monkeypatch.setattr("sys.argv", ["audit.py"])
    assert ci_audit.main() == 1
    assert "VULNERABLE" in capsys.readouterr().out


def test_every_accepted_vulnerability_is_explained():
    doc = (ROOT / "docs" / "reliability.md").read_text()
    missing = [vid for vid in ci_audit.ignored_ids() if vid not in doc]
    assert not missing, f"accepted in .ci/audit-ignore.txt but not explained in docs/reliability.md: {missing}"


def test_ci_runs_the_audit_over_every_requirement_file():
    assert any(re.match(r"make audit(\s|$)", c) for c in ci_commands()), f"{CI_RUN} must run make audit"
    assert ".ci/audit.py" in recipe("audit")
    source = (ROOT / ".ci" / "audit.py").read_text()
    for name in ("requirements-serve.txt", "requirements.txt", "requirements-dev.txt"):
        assert f'ROOT / "{name}"' in source, name
