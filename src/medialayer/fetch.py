"""Safe URL fetching: the only way MediaLayer reads a URL a client handed it.

A URL from a client is an attack on the network the service runs in until proven otherwise
(SSRF): it may name a private address, a cloud metadata endpoint, or a hostname that resolves to
one, or redirect to one after a harmless first hop. So every hop is resolved here, every address
it resolves to is vetted, and the connection goes to the vetted address itself (the hostname
rides along in the Host header and TLS SNI) so that a second DNS answer cannot swap it. Bodies
are streamed against a byte cap and the whole fetch against a wall-clock cap, so neither a huge
file nor an endless slow drip can hold a worker.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
from collections.abc import Iterable
from functools import lru_cache
from typing import Any

import httpx

from medialayer.config import Settings
from medialayer.errors import FetchFailed, MediaTooLarge

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

SCHEMES = ("http", "https")
USER_AGENT = "MediaLayer (+media fetcher)"
_IPV4_COMPAT = ipaddress.ip_network("::/96")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_GLOBAL_UNICAST = ipaddress.ip_network("2000::/3")
_CHECKS: tuple[tuple[str, str], ...] = (
    ("is_unspecified", "unspecified"),
    ("is_loopback", "loopback"),
    ("is_link_local", "link-local"),
    ("is_multicast", "multicast"),
)
"""Address properties that refuse a fetch, most specific first so the reason reads well."""
_BROAD_CHECKS: tuple[tuple[str, str], ...] = (("is_private", "private"),
                                              ("is_reserved", "reserved"))
"""Checked after the named ranges below, whose reasons say more."""
_SPECIAL: tuple[tuple[IPNetwork, str], ...] = tuple(
    (ipaddress.ip_network(cidr), reason) for cidr, reason in (
        ("100.64.0.0/10", "shared address space (carrier-grade NAT)"),
        ("192.0.0.0/24", "an IETF protocol assignment"),
        ("192.0.2.0/24", "documentation"),
        ("198.51.100.0/24", "documentation"),
        ("203.0.113.0/24", "documentation"),
        ("192.88.99.0/24", "6to4 relay anycast (deprecated)"),
        ("198.18.0.0/15", "benchmarking"),
        ("fc00::/7", "private"),
        ("fec0::/10", "site-local (deprecated)"),
        ("64:ff9b:1::/48", "local-use NAT64"),
        ("100::/64", "discard-only"),
        ("2001::/23", "an IETF protocol assignment (Teredo, benchmarking, ORCHID)"),
        ("2001:db8::/32", "documentation"),
        ("3fff::/20", "documentation"),
        ("5f00::/16", "segment routing"),
    ))
"""The IANA special-purpose registries' ranges that no media server lives in, for those that
Python's address properties miss or that depend on its version (site-local among them)."""


async def fetch(url: str, settings: Settings) -> bytes:
    """The body of `url`, or FetchFailed / MediaTooLarge saying exactly why not."""
    try:
        async with asyncio.timeout(settings.fetch_total_timeout):
            return await _fetch(url, settings)
    except TimeoutError:
        raise FetchFailed(
            f"fetching took longer than {settings.fetch_total_timeout:g} s") from None


def fetch_sync(url: str, settings: Settings) -> bytes:
    """`fetch` for callers without an event loop (CLI, bulk jobs, notebooks)."""
    return asyncio.run(fetch(url, settings))


def refusal(ip: IPAddress, allowed: Iterable[IPNetwork] = ()) -> str | None:
    """Why `ip` must not be fetched from ("private", "loopback", ...), or None if it may.

    IPv6 forms that carry an IPv4 address (mapped, compatible, 6to4, NAT64) reach that IPv4
    address, so it is vetted too; Python's own properties miss most of these forms. A mapped
    or NAT64 address is a way to reach its IPv4 address and nothing else, so that address's
    verdict is the whole verdict; IPv6 outside global unicast (2000::/3) is refused.
    """
    inner = _embedded_ipv4(ip)
    candidates = [ip] if inner is None else [inner, ip]
    if any(a in net for a in candidates for net in allowed if a.version == net.version):
        return None
    if inner is not None:
        if reason := _classify(inner):
            return f"{reason} (IPv4 {inner})"
        if isinstance(ip, ipaddress.IPv6Address) and (ip.ipv4_mapped or ip in _NAT64):
            return None
    return _classify(ip)


def _classify(ip: IPAddress) -> str | None:
    for attribute, reason in _CHECKS:
        if getattr(ip, attribute):
            return reason
    for network, reason in _SPECIAL:
        if ip.version == network.version and ip in network:
            return reason
    if ip.version == 6 and ip not in _GLOBAL_UNICAST:
        return "outside global unicast (2000::/3)"
    for attribute, reason in _BROAD_CHECKS:
        if getattr(ip, attribute):
            return reason
    return None if ip.is_global else "not globally routable"


def _embedded_ipv4(ip: IPAddress) -> ipaddress.IPv4Address | None:
    if ip.version == 4:
        return None
    if ip.ipv4_mapped:
        return ip.ipv4_mapped
    if ip.sixtofour:
        return ip.sixtofour
    if (ip in _IPV4_COMPAT and int(ip) > 1) or ip in _NAT64:  # not :: or ::1
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def allowed_networks(settings: Settings) -> tuple[IPNetwork, ...]:
    """The networks `fetch_allow_networks` lets through although private or loopback."""
    return _networks(tuple(settings.fetch_allow_networks))


@lru_cache(maxsize=32)
def _networks(cidrs: tuple[str, ...]) -> tuple[IPNetwork, ...]:
    return tuple(ipaddress.ip_network(c, strict=False) for c in cidrs)


async def _fetch(url: str, settings: Settings) -> bytes:
    allowed = allowed_networks(settings)
    timeout = httpx.Timeout(settings.fetch_read_timeout, connect=settings.fetch_connect_timeout)
    headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
    # trust_env=False: a proxy from the environment would do its own DNS and void the pinning.
    async with httpx.AsyncClient(timeout=timeout, headers=headers, trust_env=False,
                                 follow_redirects=False, verify=_tls_context()) as client:
        target = _parse(url)
        for _hop in range(settings.fetch_max_redirects + 1):
            ip = await vetted_address(target, allowed)
            result = await _get(client, target, ip, settings.fetch_max_bytes)
            if isinstance(result, bytes):
                return result
            target = result
    raise FetchFailed(f"too many redirects (more than {settings.fetch_max_redirects})")


@lru_cache(maxsize=1)
def _tls_context() -> ssl.SSLContext:
    """One verifying TLS context per process: loading the CA bundle costs ~15 ms a client."""
    return ssl.create_default_context()


def _parse(url: str | httpx.URL, location: str | None = None) -> httpx.URL:
    """`url` (or `location` relative to it, for a redirect), if it is one we may fetch."""
    try:
        target = httpx.URL(url)
        if location is not None:
            target = target.join(location)
    except (httpx.InvalidURL, TypeError) as e:
        raise FetchFailed(f"invalid URL: {e}") from None
    if target.scheme not in SCHEMES:
        raise FetchFailed(f"URL scheme {target.scheme or '(none)'!r} is not allowed; "
                          f"use {' or '.join(SCHEMES)}")
    if not target.raw_host:
        raise FetchFailed("URL has no host")
    return target


async def vetted_address(target: httpx.URL, allowed: tuple[IPNetwork, ...]) -> IPAddress:
    """The address to connect to, after every address the host resolves to passed `refusal`.

    All of them, not only the first: a resolver may rotate its answers between our check and
    any later lookup, so one bad answer condemns the host.
    """
    host = target.raw_host.decode("ascii")
    addresses = await _resolve(host, target.port or _default_port(target))
    for ip in addresses:
        if reason := refusal(ip, allowed):
            raise FetchFailed(f"refused {host}: address {ip} is {reason}")
    return addresses[0]


async def _resolve(host: str, port: int) -> list[IPAddress]:
    if _is_ip_literal(host):  # nothing to look up (odd forms like 0x7f.1 still go to DNS)
        return [ipaddress.ip_address(host)]
    try:
        infos = await asyncio.to_thread(socket.getaddrinfo, host, port,
                                        type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as e:
        raise FetchFailed(f"cannot resolve {host}: {e}") from None
    addresses = list(dict.fromkeys(ipaddress.ip_address(str(info[4][0]).split("%")[0])
                                   for info in infos))
    if not addresses:
        raise FetchFailed(f"cannot resolve {host}: no addresses")
    return addresses


def _default_port(target: httpx.URL) -> int:
    return 443 if target.scheme == "https" else 80


async def _get(client: httpx.AsyncClient, target: httpx.URL, ip: IPAddress, limit: int
               ) -> bytes | httpx.URL:
    """One hop, connected to `ip` itself: the body, or the URL a redirect points to.

    Host and TLS SNI (so certificate checks too) still name the original host.
    """
    url, headers, extensions = pinned(target, ip)
    try:
        async with client.stream("GET", url, headers=headers,
                                 extensions=extensions) as response:
            if response.has_redirect_location:
                return _parse(target, response.headers["location"])
            if not response.is_success:
                raise FetchFailed(f"{_label(target)} answered HTTP {response.status_code}")
            return await _read_capped(response, limit)
    except httpx.HTTPError as e:
        raise _failure(e, target) from None


def pinned(target: httpx.URL, ip: IPAddress
           ) -> tuple[httpx.URL, dict[str, str], dict[str, Any]]:
    """The URL, headers and request extensions that connect to the vetted `ip` itself, not to
    whatever a second lookup of the host would answer; Host and TLS SNI (so the certificate
    check too) still name the original host."""
    host = target.raw_host.decode("ascii")
    extensions: dict[str, Any] = {} if _is_ip_literal(host) else {"sni_hostname": host}
    return (target.copy_with(host=str(ip)), {"Host": target.netloc.decode("ascii")},
            extensions)


def _is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


async def _read_capped(response: httpx.Response, limit: int) -> bytes:
    """The raw body, refused as soon as it (or its declared length) passes `limit` bytes."""
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise MediaTooLarge(f"source declares {declared} bytes, over the cap of {limit}")
    body = bytearray()
    async for chunk in response.aiter_raw():
        body += chunk
        if len(body) > limit:
            raise MediaTooLarge(f"source is over the cap of {limit} bytes")
    return bytes(body)


def _failure(error: httpx.HTTPError, target: httpx.URL) -> FetchFailed:
    if isinstance(error, httpx.TimeoutException):
        return FetchFailed(f"{_label(target)} timed out ({type(error).__name__})")
    return FetchFailed(f"cannot fetch {_label(target)}: {error or type(error).__name__}")


def _label(target: httpx.URL) -> str:
    """The URL without userinfo or query, which may hold credentials or signatures."""
    return str(target.copy_with(username=None, password=None, query=None, fragment=None))
