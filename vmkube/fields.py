"""A small reader for nested configuration that remembers where it is.

Every accessor records a problem instead of raising, so one pass over the
configuration reports everything that is wrong, each line naming its key:
``vmkube:workerPools[1].memoryMb: must be at least 1024 (got 512)``.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any, Callable, Iterable

_MISSING = object()
# Values end up in unit files, haproxy lines, XML and shell commands: no control
# characters (a newline would split a line there), and nothing absurdly long.
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
MAX_STRING = 4096
MAX_MULTILINE = 65536
DNS_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")


class Problems:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def add(self, path: str, message: str) -> None:
        self.lines.append(f"{path}: {message}")

    def about(self, path: str) -> bool:
        """A problem was reported for ``path`` or anything under it (``path[0]``, ``path.x``)."""
        return any(line.startswith((path + ":", path + "[", path + ".")) for line in self.lines)


def _type_name(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


class Fields:
    """One configuration object at ``path``; reads its keys and flags the rest."""

    def __init__(self, raw: dict[str, Any], path: str, problems: Problems, sep: str = "."):
        self.raw = raw
        self.path = path
        self.problems = problems
        self.sep = sep
        self._seen: set[str] = set()

    # -- plumbing ----------------------------------------------------------

    def key(self, name: str) -> str:
        return f"{self.path}{self.sep}{name}"

    def seen(self, name: str) -> None:
        """Marks a key as handled by the caller."""
        self._seen.add(name)

    def fail(self, name: str, message: str) -> None:
        self.problems.add(self.key(name), message)

    def has(self, name: str) -> bool:
        return self.raw.get(name) is not None

    def _take(self, name: str, default: Any, kinds: tuple[type, ...], what: str) -> Any:
        self._seen.add(name)
        value = self.raw.get(name, _MISSING)
        if value is _MISSING or value is None:
            if default is _MISSING:
                self.fail(name, "is required")
                return None
            return default
        # bool is an int in Python; a flag given where a number is wanted is a mistake.
        if isinstance(value, bool) and bool not in kinds:
            self.fail(name, f"must be {what} (got {_type_name(value)})")
            return None
        if not isinstance(value, kinds):
            self.fail(name, f"must be {what} (got {_type_name(value)})")
            return None
        return value

    def done(self) -> None:
        """Flags keys nobody read: a typo must not pass silently."""
        for name in sorted(set(self.raw) - self._seen):
            self.fail(name, "unknown key")

    # -- scalars -----------------------------------------------------------

    def string(self, name: str, default: Any = _MISSING, *, choices: Iterable[str] = (),
               pattern: re.Pattern[str] | None = None, rule: str = "", multiline: bool = False) -> Any:
        """A string; with ``pattern``, the whole value must match it (a trailing newline
        does not). Control characters are refused unless ``multiline`` (a PEM key)."""
        value = self._take(name, default, (str,), "a string")
        if not isinstance(value, str) or not self.has(name):
            return value
        limit = MAX_MULTILINE if multiline else MAX_STRING
        if len(value) > limit:
            self.fail(name, f"is too long ({len(value)} characters, at most {limit})")
            return None
        if _CONTROL.search(value.replace("\n", "").replace("\r", "") if multiline else value):
            self.fail(name, "must not contain control characters (a newline, a tab, …)")
            return None
        options = list(choices)
        if options and value not in options:
            self.fail(name, f"must be one of {', '.join(options)} (got {value!r})")
            return None
        if pattern is not None and not pattern.fullmatch(value):
            self.fail(name, f"{rule or 'has the wrong form'} (got {value!r})")
            return None
        if not value.strip():
            self.fail(name, "must not be empty")
            return None
        return value

    def integer(self, name: str, default: Any = _MISSING, *, minimum: int | None = None,
                maximum: int | None = None, allowed: Iterable[int] = ()) -> Any:
        value = self._take(name, default, (int,), "a whole number")
        if not isinstance(value, int) or not self.has(name):
            return value
        options = list(allowed)
        if options and value not in options:
            self.fail(name, f"must be {' or '.join(map(str, options))} (got {value})")
            return None
        if minimum is not None and value < minimum:
            self.fail(name, f"must be at least {minimum} (got {value})")
            return None
        if maximum is not None and value > maximum:
            self.fail(name, f"must be at most {maximum} (got {value})")
            return None
        return value

    def boolean(self, name: str, default: Any = _MISSING) -> Any:
        return self._take(name, default, (bool,), "true or false")

    def network(self, name: str, default: str, *, min_prefix: int, max_prefix: int) -> Any:
        text = self.string(name, default)
        if text is None:
            return None
        try:
            net = ipaddress.ip_network(text, strict=True)
        except ValueError as exc:
            self.fail(name, f"must be an IPv4 network in CIDR form like 10.0.0.0/16 ({exc})")
            return None
        if net.version != 4:
            self.fail(name, f"must be an IPv4 network (got {text!r})")
            return None
        if not min_prefix <= net.prefixlen <= max_prefix:
            self.fail(name, f"prefix length must be between /{min_prefix} and /{max_prefix} (got {text!r})")
            return None
        return net

    # -- containers --------------------------------------------------------

    def obj(self, name: str, *, required: bool = False) -> Fields | None:
        value = self._take(name, _MISSING if required else None, (dict,), "an object")
        if value is None:
            return None
        return Fields(value, self.key(name), self.problems)

    def items(self, name: str, *, required: bool = False) -> list[Fields]:
        value = self._take(name, _MISSING if required else [], (list,), "a list")
        out: list[Fields] = []
        for i, item in enumerate(value or []):
            path = f"{self.key(name)}[{i}]"
            if not isinstance(item, dict):
                self.problems.add(path, f"must be an object (got {_type_name(item)})")
                continue
            out.append(Fields(item, path, self.problems))
        return out

    def strings(self, name: str, check: Callable[[str, str], str | None] | None = None) -> list[str]:
        value = self._take(name, [], (list,), "a list of strings")
        out: list[str] = []
        for i, item in enumerate(value or []):
            path = f"{self.key(name)}[{i}]"
            if not isinstance(item, str):
                self.problems.add(path, f"must be a string (got {_type_name(item)})")
                continue
            message = check(item, path) if check else None
            if message:
                self.problems.add(path, message)
                continue
            out.append(item)
        return out

    def mapping(self, name: str, check: Callable[[str, Any], str | None] | None = None) -> dict[str, Any]:
        value = self._take(name, {}, (dict,), "an object")
        out: dict[str, Any] = {}
        for k, v in (value or {}).items():
            message = check(k, v) if check else None
            if message:
                self.fail(f"{name}.{k}", message)
                continue
            out[k] = v
        return out
