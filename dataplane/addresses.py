"""Address items of rules (prefixes, `*`, service tags, ASGs) → integer ranges, through one resolver.

Definitions where Azure publishes none (reference §4, listed in the README):
- VirtualNetwork: the address spaces given (a VNet's own, its peers') plus 168.63.129.16.
- Internet: IPv4 unicast outside 0/8, 10/8, 100.64/10, 127/8, 169.254/16, 172.16/12, 192.168/16 and
  224/3 (multicast and reserved), plus IPv6 global unicast 2000::/3; minus VirtualNetwork.
- AzureLoadBalancer: 168.63.129.16/32. AzurePlatformDNS: 168.63.129.16/32; AzurePlatformIMDS:
  169.254.169.254/32; AzurePlatformLKM: Azure's KMS addresses (§9).
"""

from __future__ import annotations

import gzip
from bisect import bisect_right
import json
import zlib
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Mapping

from .documents import parse_json
from .errors import DataplaneError, RuleError
from .rules import parse_prefix

if TYPE_CHECKING:
    from netaddr import IPSet

HOST_IP = "168.63.129.16"
IMDS_IP = "169.254.169.254"
KMS_IPS = ("23.102.135.246", "20.118.99.224", "40.83.235.53")
INTERNET_EXCLUDED_V4 = ("0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16",
                        "172.16.0.0/12", "192.168.0.0/16", "224.0.0.0/3")
INTERNET_V6 = "2000::/3"
PLATFORM_TAGS = {
    "azureplatformdns": (HOST_IP + "/32",),
    "azureplatformimds": (IMDS_IP + "/32",),
    "azureplatformlkm": tuple(ip + "/32" for ip in KMS_IPS),
    "azureloadbalancer": (HOST_IP + "/32",),
}

V6 = 1 << 128
"""Added to an IPv6 address in keys shared by both families."""


def ip_key(version: int, ip: int) -> int:
    """One integer key space for both families (an IPv4 int could equal an IPv6 int)."""
    return ip if version == 4 else ip | V6


Ranges = tuple[tuple[tuple[int, int], ...], tuple[tuple[int, int], ...]]
"""(IPv4 ranges, IPv6 ranges), each a sorted tuple of inclusive (first, last) integer pairs."""
NOTHING: Ranges = ((), ())


class ServiceTags:
    """Azure's downloadable ServiceTags JSON: tag name (case-insensitive) → prefixes."""

    def __init__(self, tags: Mapping[str, Iterable[str]], *, source: str = "", change_number: int | None = None):
        self.source = source
        self.change_number = change_number
        self._tags = {name.lower(): tuple(prefixes) for name, prefixes in tags.items()}

    @classmethod
    def from_file(cls, path: str | Path) -> "ServiceTags":
        path = Path(path)
        try:
            raw = path.read_bytes()
            if raw[:2] == b"\x1f\x8b":
                raw = gzip.decompress(raw)
            doc = parse_json(raw, file=str(path))
        except (OSError, EOFError, gzip.BadGzipFile, zlib.error) as e:
            raise DataplaneError(f"cannot read service tags: {e}", file=str(path)) from None
        except UnicodeDecodeError as e:
            raise DataplaneError(f"is not a ServiceTags JSON file: {e}", file=str(path)) from None
        return cls.from_document(doc, source=str(path))

    @classmethod
    def from_document(cls, doc: object, *, source: str = "") -> "ServiceTags":
        if not isinstance(doc, dict) or not isinstance(doc.get("values"), list):
            raise DataplaneError("is not a ServiceTags JSON file: no 'values' list", file=source or None)
        tags = {}
        for i, entry in enumerate(doc["values"]):
            try:
                tags[entry["name"]] = entry["properties"]["addressPrefixes"] or ()
            except (KeyError, TypeError):
                raise DataplaneError(f"values[{i}] has no name or properties.addressPrefixes",
                                     file=source or None) from None
        return cls(tags, source=source, change_number=doc.get("changeNumber"))

    @classmethod
    def bundled(cls) -> "ServiceTags":
        """The small set shipped with the package: the global (non-regional) tags of Azure's file. It is
        read on first use, as reading it takes longer than loading a 1,000-rule scenario, and most
        scenarios name no tag beyond the built-in ones."""
        tags = cls.__new__(cls)
        tags.source = "bundled"
        return tags

    def __getattr__(self, name: str) -> object:
        """Only the bundled set lacks its tags and change number, until this reads them."""
        if name not in ("_tags", "change_number"):
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}", name=name, obj=self)
        from importlib import resources

        data = resources.files("dataplane").joinpath("data/servicetags-global.json.gz").read_bytes()
        read = self.from_document(json.loads(gzip.decompress(data)), source="bundled")
        self._tags, self.change_number = read._tags, read.change_number
        return getattr(self, name)

    def get(self, name: str) -> tuple[str, ...] | None:
        return self._tags.get(name.lower())

    def __contains__(self, name: str) -> bool:
        return name.lower() in self._tags

    def __len__(self) -> int:
        return len(self._tags)


@lru_cache(maxsize=1)
def bundled_service_tags() -> ServiceTags:
    return ServiceTags.bundled()


def ipset_ranges(ipset: IPSet) -> Ranges:
    v4, v6 = [], []
    for r in ipset.iter_ipranges():
        (v4 if r.version == 4 else v6).append((r.first, r.last))
    return tuple(v4), tuple(v6)


def merge_ranges(ranges: Iterable[tuple[int, int]]) -> tuple[tuple[int, int], ...]:
    """Sorted, with overlapping and adjacent ranges joined."""
    out: list[list[int]] = []
    for lo, hi in sorted(ranges):
        if out and lo <= out[-1][1] + 1:
            if hi > out[-1][1]:
                out[-1][1] = hi
        else:
            out.append([lo, hi])
    return tuple((lo, hi) for lo, hi in out)


class AddressResolver:
    """Resolves rule address items for one place in the topology (one VNet's view).

    `virtual_network` is the address space that VirtualNetwork means there; `asgs` maps each
    application security group to the addresses of its member NICs.
    """

    def __init__(self, virtual_network: Iterable[str] = (), *, service_tags: ServiceTags | None = None,
                 asgs: Mapping[str, Iterable[str]] | None = None):
        self.virtual_network = tuple(virtual_network)
        self.service_tags = service_tags
        self.asgs = {name.lower(): tuple(addrs) for name, addrs in (asgs or {}).items()}
        self._cache: dict[str, Ranges] = {}
        space = _parsed_ranges(self.virtual_network + (HOST_IP,))
        if space is None:
            self._builtin = _builtin_ranges_netaddr(self.virtual_network)
        else:
            self._builtin = {
                "virtualnetwork": space,
                "internet": (subtract_ranges(_INTERNET_V4, space[0]), subtract_ranges(_INTERNET_V6_RANGES, space[1])),
            }

    def resolve(self, item: str, *, rule: str | None = None, field: str | None = None) -> Ranges:
        """`*`, an IP, a CIDR or a tag → ranges. An unknown tag is an error naming it."""
        cached = self._cache.get(item)
        if cached is not None:
            return cached
        net = parse_prefix(item)
        if item == "*":
            ranges: Ranges = (((0, 2**32 - 1),), ((0, 2**128 - 1),))
        elif net is not None:
            span = (net.first, net.last)
            ranges = ((span,), ()) if net.version == 4 else ((), (span,))
        else:
            ranges = self._tag(item, rule, field)
        self._cache[item] = ranges
        return ranges

    def resolve_asg(self, name: str) -> Ranges:
        """An ASG with no member NIC resolves to nothing, so its rules match nothing."""
        addrs = self.asgs.get(name.lower(), ())
        if not addrs:
            return NOTHING
        ranges = _parsed_ranges(addrs)
        if ranges is None:
            from netaddr import IPSet

            ranges = ipset_ranges(IPSet(addrs))
        return ranges

    def _tag(self, name: str, rule: str | None, field: str | None) -> Ranges:
        key = name.lower()
        if key in self._builtin:
            return self._builtin[key]
        if key in _PLATFORM_RANGES:  # AzureLoadBalancer is in every NSG's default rules
            return _PLATFORM_RANGES[key]
        from netaddr import IPSet  # here, not above: the built-in tags are most of those rules name

        prefixes = self.service_tags.get(name) if self.service_tags is not None else None
        if prefixes is None:
            where = f"the service tags file {self.service_tags.source}" if self.service_tags else "no service tags file"
            raise RuleError(f"unknown service tag {name!r} (not built in, and not in {where})",
                            rule=rule, code="SecurityRuleInvalidAddressPrefix", field=field)
        return ipset_ranges(IPSet(prefixes))


def _parsed_ranges(items: Iterable[str]) -> Ranges | None:
    """The ranges of addresses and prefixes as an IPSet of them has them, without importing netaddr (a
    scenario's VNets and ASGs, read at every start); None when one is in a spelling only netaddr reads."""
    prefixes = [parse_prefix(item) for item in items]
    if None in prefixes:
        return None
    return (merge_ranges((p.first, p.last) for p in prefixes if p.version == 4),  # type: ignore[union-attr]
            merge_ranges((p.first, p.last) for p in prefixes if p.version == 6))  # type: ignore[union-attr]


def _builtin_ranges_netaddr(virtual_network: tuple[str, ...]) -> dict[str, Ranges]:
    """VirtualNetwork and Internet as netaddr reads the address spaces given, in whatever spelling."""
    from netaddr import IPSet

    vnet = IPSet(virtual_network) | IPSet([HOST_IP])
    internet = (IPSet(["0.0.0.0/0"]) - IPSet(INTERNET_EXCLUDED_V4)) | IPSet([INTERNET_V6])
    return {"virtualnetwork": ipset_ranges(vnet), "internet": ipset_ranges(internet - vnet)}


def subtract_ranges(ranges: tuple[tuple[int, int], ...],
                    minus: tuple[tuple[int, int], ...]) -> tuple[tuple[int, int], ...]:
    """`ranges` without the values of `minus`, both sorted and disjoint as `merge_ranges` gives them: for
    addresses, the ranges an IPSet difference gives, without importing netaddr (a tenth of a scenario's
    loading time)."""
    out = []
    for lo, hi in ranges:
        for m_lo, m_hi in minus:
            if m_hi < lo or m_lo > hi:
                continue
            if m_lo > lo:
                out.append((lo, m_lo - 1))
            lo = m_hi + 1
            if lo > hi:
                break
        if lo <= hi:
            out.append((lo, hi))
    return tuple(out)


_INTERNET_V4 = subtract_ranges(((0, 2**32 - 1),), _parsed_ranges(INTERNET_EXCLUDED_V4)[0])  # type: ignore[index]
_INTERNET_V6_RANGES = _parsed_ranges([INTERNET_V6])[1]  # type: ignore[index]
_PLATFORM_RANGES = {tag: _parsed_ranges(prefixes) for tag, prefixes in PLATFORM_TAGS.items()}


class RangeSet:
    """Membership of integer addresses in a set of ranges by binary search, for the per-packet path."""

    __slots__ = ("_starts", "_ends")

    def __init__(self, ranges: Ranges):
        self._starts = ([lo for lo, _ in ranges[0]], [lo for lo, _ in ranges[1]])
        self._ends = ([hi for _, hi in ranges[0]], [hi for _, hi in ranges[1]])

    def contains(self, version: int, ip: int) -> bool:
        family = 0 if version == 4 else 1
        i = bisect_right(self._starts[family], ip) - 1
        return i >= 0 and ip <= self._ends[family][i]


def is_in(ranges: Ranges, address: str) -> bool:
    """Membership of one address; used by explanations and tests, never on the hot path."""
    from netaddr import IPNetwork

    ip = IPNetwork(address)
    return any(lo <= ip.first <= hi for lo, hi in ranges[0 if ip.version == 4 else 1])
