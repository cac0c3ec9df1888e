"""The pull-request workflow passes actionlint (built offline by tools/build)
and keeps its promises: a preview per environment, no secrets for forks."""

from __future__ import annotations

import json
import re
import subprocess

import yaml

from tests.helpers import ROOT

WORKFLOW = ROOT / ".github" / "workflows" / "preview.yml"


def test_workflow_passes_actionlint(toolchain_bin):
    proc = subprocess.run([str(toolchain_bin / "actionlint"), "-no-color", str(WORKFLOW)],
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_workflow_previews_every_environment_and_skips_forks():
    doc = yaml.safe_load(WORKFLOW.read_text())
    job = doc["jobs"]["preview"]
    stacks = job["strategy"]["matrix"]["stack"]
    assert sorted(stacks) == sorted(p.name.split(".")[1] for p in ROOT.glob("Pulumi.*.yaml")
                                    if p.name != "Pulumi.local.yaml")
    assert job["if"] == "github.event.pull_request.head.repo.full_name == github.repository"
    assert set(doc[True]) == {"pull_request"}  # never pull_request_target: fork code must not see secrets
    step = [s for s in job["steps"] if str(s.get("uses", "")).startswith("pulumi/actions@")][0]
    assert step["with"]["command"] == "preview" and step["with"]["diff"] is True
    assert step["with"]["comment-on-pr"] is True


def steps() -> list[dict]:
    return yaml.safe_load(WORKFLOW.read_text())["jobs"]["preview"]["steps"]


def test_every_action_is_pinned_by_commit_sha():
    uses = [s["uses"] for s in steps() if "uses" in s]
    assert uses and all(re.fullmatch(r"[\w.-]+/[\w.-]+@[0-9a-f]{40}", u) for u in uses), uses


def test_the_checkout_keeps_no_credentials_and_the_cli_version_is_pinned():
    checkout = [s for s in steps() if s.get("uses", "").startswith("actions/checkout@")][0]
    assert checkout["with"]["persist-credentials"] is False
    pulumi = [s for s in steps() if s.get("uses", "").startswith("pulumi/actions@")][0]
    pins = dict(line.split("==") for line in (ROOT / "requirements.txt").read_text().splitlines()
                if "==" in line and not line.startswith("#"))
    assert pulumi["with"]["pulumi-version"] == pins["pulumi"]


def test_each_stack_previews_in_its_own_environment_with_least_permissions():
    doc = yaml.safe_load(WORKFLOW.read_text())
    job = doc["jobs"]["preview"]
    # preview-prod carries required reviewers (README): prod's secrets wait for an approval.
    assert job["environment"] == "preview-${{ matrix.stack }}"
    assert doc["permissions"] == {"contents": "read", "pull-requests": "write"}
    assert "permissions" not in job
    # Secrets appear only in the preview step, never in a step running the PR's own shell code.
    for step in steps():
        if "run" in step:
            assert "secrets." not in json.dumps(step), step
