"""The Kubernetes provider plugin tools/build makes is labelled with the
version the pinned Python SDK asks the engine for."""

from __future__ import annotations

import re

from tests.helpers import ROOT


def test_kubernetes_plugin_version_matches_the_python_sdk_pin():
    gomod = (ROOT / "tools" / "go" / "pulumi-resource-kubernetes" / "go.mod").read_text()
    label = re.search(r"^// plugin-version (\S+)$", gomod, re.M)
    pin = re.search(r"^pulumi-kubernetes==(\S+)$", (ROOT / "requirements.txt").read_text(), re.M)
    assert label and pin
    assert label.group(1) == pin.group(1), (
        "requirements.txt pins pulumi-kubernetes==%s but tools/go/pulumi-resource-kubernetes/go.mod "
        "labels the plugin %s: the engine would find no plugin for the SDK" % (pin.group(1), label.group(1)))
