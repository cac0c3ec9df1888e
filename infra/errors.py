"""The few errors vmkube raises. Library exceptions are translated into these
once, where they happen, so that every message names what it is about."""


class VmkubeError(Exception):
    """Base of every error vmkube reports to the user."""


class ConfigError(VmkubeError):
    """The stack configuration breaks one or more rules.

    Holds every problem found, one line each, so a user fixes them all at once.
    """

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        super().__init__(self.render())

    def render(self) -> str:
        count = len(self.problems)
        head = f"invalid stack configuration ({count} problem{'s' if count != 1 else ''}):"
        return "\n".join([head, *(f"  {p}" for p in self.problems)])


class HypervisorError(VmkubeError):
    """The hypervisor refused or failed an operation; the message names the VM or key."""


class VMNotFound(HypervisorError):
    """No VM with that name owned by this pool."""

    def __init__(self, name: str):
        self.name = name
        super().__init__(f"{name}: VM not found")


class NodesFailed(VmkubeError):
    """Some nodes of a batch failed; every failure is listed with its node."""

    def __init__(self, action: str, failures: dict[str, str], total: int):
        self.failures = dict(failures)
        lines = [f"  {node}: {why}" for node, why in sorted(self.failures.items())]
        super().__init__(f"{action} failed on {len(failures)} of {total} nodes:\n" + "\n".join(lines))


class DownloadError(VmkubeError):
    """Fetching from a mirror failed; one line per file, each naming its config key and URL."""

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        count = len(self.problems)
        head = f"could not fetch the Kubernetes binaries ({count} problem{'s' if count != 1 else ''}):"
        super().__init__("\n".join([head, *(f"  {p}" for p in self.problems)]))
