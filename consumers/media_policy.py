"""Which media links may be fetched: a media URL comes from a webhook payload, so without a
check anyone with a webhook token could make the worker fetch an address of its own network
(server-side request forgery).

A link is fetched only when its host is in MEDIA_ALLOWED_HOSTS (exact names, `*.suffix`
patterns, IP addresses or networks), and every address the name resolves to is public or
itself listed: an allowed name that resolves to 10.0.0.5 or 127.0.0.1 is refused at connect
time, by the resolver, so a second lookup cannot swap the address after the check.
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class RefusedAddress(OSError):
    """A host or address outside the allow-list; never retried."""


class HostPolicy:
    def __init__(self, allowed: str) -> None:
        self.names: set[str] = set()
        self.suffixes: list[str] = []
        self.networks: list[Network] = []
        for item in (part.strip().lower() for part in allowed.split(",")):
            if not item:
                continue
            if item.startswith("*."):
                self.suffixes.append(item[1:])  # "*.gupshup.io" -> ".gupshup.io"
                continue
            try:
                self.networks.append(ipaddress.ip_network(item, strict=False))
            except ValueError:
                self.names.add(item.rstrip("."))

    def check_url(self, url: str) -> None:
        """Raise RefusedAddress unless `url` is http(s) on an allowed host."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https"):
            raise RefusedAddress(f"scheme {parts.scheme!r} is not fetched")
        host = (parts.hostname or "").rstrip(".").lower()
        if not host:
            raise RefusedAddress("the link has no host")
        address = _address(host)
        if address is not None:
            # An address in the link is fetched only if listed: there is no name to allow.
            if not self._listed(address):
                raise RefusedAddress(f"address {host} is not in MEDIA_ALLOWED_HOSTS")
            return
        if host not in self.names and not any(host.endswith(s) for s in self.suffixes):
            raise RefusedAddress(f"host {host} is not in MEDIA_ALLOWED_HOSTS")

    def check_address(self, host: str, address: str) -> None:
        ip = _address(address.split("%", 1)[0])
        if ip is None:
            raise RefusedAddress(f"{host} resolved to {address!r}, not an address")
        if not ip.is_global and not self._listed(ip):
            raise RefusedAddress(f"{host} resolves to a private address {ip}")

    def _listed(self, ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
        return any(ip.version == n.version and ip in n for n in self.networks)


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return None
    mapped = getattr(ip, "ipv4_mapped", None)  # ::ffff:127.0.0.1 is 127.0.0.1
    return mapped or ip


class GuardedResolver(AbstractResolver):
    """The default resolver, refusing names that resolve to a private or loopback address."""

    def __init__(self, policy: HostPolicy) -> None:
        self.policy = policy
        self.inner = DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self.inner.resolve(host, port, family)
        for result in results:
            self.policy.check_address(host, result["host"])
        return results

    async def close(self) -> None:
        await self.inner.close()
