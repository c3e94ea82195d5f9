"""The client's IP address: the direct peer's, or the one a trusted proxy saw.

Anybody can send ``X-Forwarded-For`` or ``Forwarded``, so a forwarding
header is evidence only about the hops that proxies *you run* appended. The
rule (nginx's ``real_ip_recursive on``): read the header only when the
direct peer is a trusted proxy, walk it from the right (each proxy appends
the address it received the request from), skip the addresses of trusted
proxies, and take the first one that is not trusted. That entry was written
by your outermost proxy about whoever connected to it; everything to its
left may have been made up by the client.

Pure functions on :mod:`ipaddress` and strings, with no framework types, so
the same rule serves a rate-limit key, an access log or an allow list.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Iterable, Mapping

__all__ = [
    "FORWARDED",
    "IPAddress",
    "IPNetwork",
    "TrustedProxies",
    "X_FORWARDED_FOR",
    "forwarded_chain",
    "parse_address",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

#: The de facto header: ``X-Forwarded-For: client, proxy1, proxy2``.
X_FORWARDED_FOR = "x-forwarded-for"
#: RFC 7239: ``Forwarded: for=client;proto=https, for="[2001:db8::1]:4711"``.
FORWARDED = "forwarded"


@functools.lru_cache(maxsize=4096)  # the same few peers and proxies, request after request
def parse_address(value: str) -> IPAddress | None:
    """The IP address in one hop entry, or ``None`` when it holds none.

    Accepts what proxies write: ``192.0.2.1``, ``192.0.2.1:8080``,
    ``2001:db8::1``, ``[2001:db8::1]:8080`` and RFC 7239's quoted forms.
    ``unknown`` and obfuscated names (``_hidden``) are not addresses. An IPv4
    client on a dual-stack socket (``::ffff:192.0.2.1``) is its IPv4 address,
    so that an IPv4 network matches it and it keys like the same client
    arriving over IPv4.
    """
    value = value.strip().strip('"')
    if value.startswith("["):
        value = value[1:].partition("]")[0]
    elif value.count(":") == 1:
        value = value.partition(":")[0]  # IPv4 with a port
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _forwarded_for(element: str) -> str:
    """The ``for=`` parameter of one RFC 7239 element (``""`` if it has none)."""
    for pair in element.split(";"):
        name, _, value = pair.partition("=")
        if name.strip().lower() == "for":
            return value
    return ""


def forwarded_chain(headers: Mapping[str, str], header: str = X_FORWARDED_FOR) -> list[str]:
    """The hop entries of ``header`` (lower-case name), first hop first.

    Repeated header lines arrive joined with commas (as both adapters and
    WSGI servers join them), which is the same list.
    """
    value = headers.get(header)
    if not value:
        return []
    entries = value.split(",")
    if header == FORWARDED:
        return [_forwarded_for(element) for element in entries]
    return entries


class TrustedProxies:
    """The proxies whose forwarding header is believed, and which header that is.

    ``networks``: CIDRs (``"10.0.0.0/8"``, ``"2001:db8::/32"``) or single
    addresses; a bare string is one network. Host bits set in a CIDR
    (``"10.0.0.1/8"``) are refused rather than guessed at: a mistyped trust
    list is a security bug. ``header``: the one header your proxies write —
    ``"x-forwarded-for"`` (default) or ``"forwarded"``. Only one is read,
    because a proxy passes the other through untouched, and a client who
    wrote it would be believed.
    """

    __slots__ = ("header", "networks")

    def __init__(self, networks: Iterable[str | IPNetwork] = (), *, header: str = X_FORWARDED_FOR) -> None:
        if isinstance(networks, str):
            networks = [networks]
        self.networks: tuple[IPNetwork, ...] = tuple(ipaddress.ip_network(n) for n in networks)
        header = header.lower()
        if header not in (X_FORWARDED_FOR, FORWARDED):
            raise ValueError(f"header must be {X_FORWARDED_FOR!r} or {FORWARDED!r}, got {header!r}")
        self.header = header

    def trusts(self, address: IPAddress) -> bool:
        return any(address in network for network in self.networks)

    def client_ip(self, peer: str | None, headers: Mapping[str, str]) -> str | None:
        """The client's address (normalised text) given the direct ``peer`` and the request ``headers``.

        ``None`` when the server knows no peer (a Unix socket, say); a peer
        that is not an IP address is returned as it is, with nothing to walk.
        When the chain runs out with every hop trusted, the left-most is the
        client (a machine inside your own networks). When a trusted hop wrote
        no usable address (``for=unknown``), that proxy is the nearest
        client known.
        """
        if not peer:
            return None
        address = parse_address(peer)
        if address is None:
            return peer
        if not self.trusts(address):
            return str(address)
        for entry in reversed(forwarded_chain(headers, self.header)):
            hop = parse_address(entry)
            if hop is None:
                break
            address = hop
            if not self.trusts(address):
                break
        return str(address)
