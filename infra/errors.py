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
