"""Static node addresses: the ranges a pool draws from, and which node gets which.

A pool's addresses are a list of single IPv4 addresses and ranges (``10.0.0.10-10.0.0.19``).
Node *i* of a pool (names end in ``-1``, ``-2``, …; a pool shrinks from the end) always gets
the *i*-th address of that list, so a node keeps its address for as long as it exists and a
pool that grows or shrinks moves no other node: no allocation has to be remembered, and
preview knows every address before any VM exists.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Iterable, Sequence

# More than any pool needs, and small enough that a typo like 10.0.0.1-10.9.0.1 is caught.
MAX_RANGE = 4096


@dataclass(frozen=True, order=True)
class AddressRange:
    first: ipaddress.IPv4Address
    last: ipaddress.IPv4Address

    @property
    def size(self) -> int:
        return int(self.last) - int(self.first) + 1

    def overlaps(self, other: "AddressRange") -> bool:
        return self.first <= other.last and other.first <= self.last

    def __contains__(self, address: object) -> bool:
        return isinstance(address, ipaddress.IPv4Address) and self.first <= address <= self.last

    def __str__(self) -> str:
        return str(self.first) if self.first == self.last else f"{self.first}-{self.last}"


def parse_range(text: str) -> AddressRange:
    """``10.0.0.5`` or ``10.0.0.5-10.0.0.9``; ValueError says what is wrong."""
    first_text, sep, last_text = text.partition("-")
    try:
        first = ipaddress.IPv4Address(first_text.strip())
        last = ipaddress.IPv4Address(last_text.strip()) if sep else first
    except ValueError:
        raise ValueError(f"must be an IPv4 address or a range like 10.0.0.10-10.0.0.19 (got {text!r})") from None
    if last < first:
        raise ValueError(f"the range ends before it starts (got {text!r})")
    if int(last) - int(first) + 1 > MAX_RANGE:
        raise ValueError(f"the range holds more than {MAX_RANGE} addresses (got {text!r})")
    return AddressRange(first, last)


def capacity(ranges: Iterable[AddressRange]) -> int:
    return sum(r.size for r in ranges)


def nth(ranges: Sequence[AddressRange], index: int) -> str:
    """The address at ``index`` (0-based) of the ranges taken in order."""
    for r in ranges:
        if index < r.size:
            return str(r.first + index)
        index -= r.size
    raise IndexError("the pool has fewer addresses than nodes")


def pool_addresses(ranges: Sequence[AddressRange], count: int) -> tuple[str, ...]:
    """The addresses of a pool's nodes 1..count, in node order."""
    return tuple(nth(ranges, i) for i in range(count))
