"""The pull-request workflow passes actionlint (built offline by tools/build)
and keeps its promises: a preview per environment, no secrets for forks."""

from __future__ import annotations

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
