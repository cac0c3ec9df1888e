"""The vSphere settings: inventory paths, storage policy or datastore, custom
attributes and per-pool anti-affinity; every rule names its key; the new settings
cross the engine and a state written before they existed still reads."""

from __future__ import annotations

import json

import pytest

from vmkube import config
from vmkube.contracts import PoolSpec, hypervisor_from_props, hypervisor_to_props
from vmkube.errors import ConfigError
from tests.helpers import example_raw, example_secret_keys


def load(**vsphere):
    raw = example_raw("dev")
    raw["vsphere"].update(vsphere)
    raw["vsphere"] = {k: v for k, v in raw["vsphere"].items() if v is not None}
    return config.load(raw, stack="dev", secret_keys=example_secret_keys("dev"), apps=["hello"])


def problems(**vsphere) -> list[str]:
    with pytest.raises(ConfigError) as err:
        load(**vsphere)
    return err.value.problems


@pytest.mark.parametrize("key, value", [
    ("datacenter", "F0/DC1"), ("datacenter", "/F0/DC1"), ("cluster", "prod/DC1_C0"),
    ("resourcePool", "/F0/DC1/host/prod/DC1_C0/Resources/kubernetes"), ("datastore", "F0/LocalDS_0"),
    ("network", "F0/DC1_DVPG0"), ("folder", "teams/platform/vmkube"), ("template", "templates/debian-12"),
    ("template", "name with spaces %2f escaped"),
])
def test_inventory_settings_take_names_and_paths(key, value):
    spec = load(**{key: value}).vsphere
    field = {"resourcePool": "resource_pool"}.get(key, key)
    assert getattr(spec, field) == value


@pytest.mark.parametrize("key", ["datacenter", "cluster", "datastore", "network", "folder", "template"])
@pytest.mark.parametrize("value", ["a//b", "a/", "/", "//a"])
def test_an_empty_path_level_names_the_key(key, value):
    assert [p for p in problems(**{key: value}) if p.startswith(f"vmkube:vsphere.{key}: ")] == [
        f"vmkube:vsphere.{key}: must be a name or an inventory path like parent/child "
        f"(no empty parts, no trailing '/') (got {value!r})"]


def test_a_storage_policy_instead_of_a_datastore():
    spec = load(datastore=None, storagePolicy="vSAN Default Storage Policy").vsphere
    assert (spec.datastore, spec.storage_policy) == ("", "vSAN Default Storage Policy")


def test_datastore_or_storage_policy_not_both_and_not_neither():
    assert problems(storagePolicy="gold") == [
        "vmkube:vsphere.storagePolicy: set datastore or storagePolicy, not both "
        "(a policy picks a compatible datastore)"]
    assert problems(datastore=None) == [
        "vmkube:vsphere.datastore: is required: set datastore or storagePolicy (where the disks go)"]
    assert problems(datastore=None, storagePolicy=7) == ["vmkube:vsphere.storagePolicy: must be a string (got an integer)",
                                                         ]


def test_custom_attributes():
    spec = load(customAttributes={"team": "platform", "cost center": "4711"}).vsphere
    assert spec.custom_attributes == {"team": "platform", "cost center": "4711"}
    assert load().vsphere.custom_attributes == {}


@pytest.mark.parametrize("attributes, problem", [
    ({"cost": 4711}, "vmkube:vsphere.customAttributes.cost: must be a string (quote numbers and booleans)"),
    ({"vmkube.folder": "x"}, "vmkube:vsphere.customAttributes.vmkube.folder: names starting with 'vmkube.' are "
                             "vmkube's own; choose another"),
    ({"team": "a\nb"}, "vmkube:vsphere.customAttributes.team: must be at most 4096 characters without control "
                       "characters"),
    ({"x" * 256: "a"}, f"vmkube:vsphere.customAttributes.{'x' * 256}: must be an attribute name of 1 to 255 "
                       "characters without control characters"),
    ({" ": "a"}, "vmkube:vsphere.customAttributes. : must be an attribute name"),
    (["team"], "vmkube:vsphere.customAttributes: must be an object (got a list)"),
])
def test_a_wrong_custom_attribute_names_its_key(attributes, problem):
    assert any(p.startswith(problem) for p in problems(customAttributes=attributes)), problems(
        customAttributes=attributes)


def test_anti_affinity_per_worker_pool():
    raw = example_raw("dev")
    raw["workerPools"][0]["antiAffinity"] = True
    spec = config.load(raw, stack="dev", secret_keys=example_secret_keys("dev"), apps=["hello"])
    assert spec.worker_pools[0].anti_affinity is True
    assert load().worker_pools[0].anti_affinity is False
    raw["workerPools"][0]["antiAffinity"] = "yes"
    with pytest.raises(ConfigError) as err:
        config.load(raw, stack="dev", secret_keys=example_secret_keys("dev"), apps=["hello"])
    assert err.value.problems == ["vmkube:workerPools[0].antiAffinity: must be true or false (got a string)"]


def test_the_prod_example_shows_a_folder_path_anti_affinity_and_attributes():
    spec = config.load(example_raw("prod"), stack="prod", secret_keys=example_secret_keys("prod"), apps=["hello"])
    assert spec.vsphere.folder.count("/") >= 1 and spec.vsphere.custom_attributes
    assert [p.anti_affinity for p in spec.worker_pools] == [True, False]


def test_new_settings_cross_the_engine_and_old_states_read():
    spec = load(datastore=None, storagePolicy="gold", customAttributes={"team": "a"}).vsphere
    back = hypervisor_from_props(json.loads(json.dumps(hypervisor_to_props(spec))))
    assert (back.storage_policy, back.custom_attributes, back.datastore) == ("gold", {"team": "a"}, "")
    old = hypervisor_to_props(load().vsphere)
    del old["storagePolicy"], old["customAttributes"]  # written before these settings existed
    read = hypervisor_from_props(old)
    assert (read.storage_policy, read.custom_attributes, read.datastore) == ("", {}, "LocalDS_0")

    pool = PoolSpec("o", ("a", "b"), 1, 1024, 10, "img", "vmkube", "k", anti_affinity=True)
    assert PoolSpec.from_props(json.loads(json.dumps(pool.to_props()))).anti_affinity is True
    props = pool.to_props()
    del props["antiAffinity"]
    assert PoolSpec.from_props(props).anti_affinity is False
