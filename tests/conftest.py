"""Fixtures shared by every test package: simulators, daemons, the toolchain."""

pytest_plugins = ["tests.fixtures.toolchain", "tests.fixtures.vcsim", "tests.fixtures.libvirt",
                  "tests.fixtures.sshd", "tests.fixtures.kube"]
