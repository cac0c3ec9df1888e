"""The few errors vmkube raises. Library exceptions are translated into these
once, where they happen, so that every message names what it is about."""


class VmkubeError(Exception):
    """Base of every error vmkube reports to the user."""


class ConfigError(VmkubeError):
    """The stack configuration breaks one or more rules.

    Holds every problem found, one line each, so a user fixes them all at once.
    """

    def __init__(self, problems: list[str], what: str = "stack configuration"):
        self.problems = list(problems)
        self.what = what  # "stack configuration", or "cluster arguments" for the component
        super().__init__(self.render())

    def render(self) -> str:
        return problem_list(f"invalid {self.what}", self.problems)


def problem_list(head: str, problems: list[str]) -> str:
    """``head (N problems):`` and one indented line per problem: every multi-problem error reads so."""
    count = len(problems)
    return "\n".join([f"{head} ({count} problem{'s' if count != 1 else ''}):", *(f"  {p}" for p in problems)])


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


class BootstrapError(VmkubeError):
    """A bootstrap step failed on a node; the message names the node and the step."""


class DownloadError(VmkubeError):
    """Fetching from a mirror failed; one line per file, each naming its config key and URL."""

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        super().__init__(problem_list("could not fetch the Kubernetes binaries", self.problems))
