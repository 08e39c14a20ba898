"""The SSRF-safe fetcher, against a real local HTTP server and every way to a private address."""

from __future__ import annotations

import ipaddress
import socket
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import pytest

from medialayer.config import Settings
from medialayer.errors import FetchFailed, MediaTooLarge
from medialayer.fetch import fetch, fetch_sync, refusal

from deadlines import DRIP_SECONDS, SHORT_DEADLINE

if TYPE_CHECKING:
    from deadlines import Media, Origin

pytest_plugins = ["api_fixtures"]


@pytest.fixture
def allowed(make_settings: Callable[..., Settings]) -> Settings:
    """Settings that may reach the origin on 127.0.0.1 (and nothing else private)."""
    return make_settings()


@pytest.fixture
def strict(make_settings: Callable[..., Settings]) -> Settings:
    """Production-like settings: no private address at all."""
    return make_settings(allow=[])


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def refused(url: str, settings: Settings) -> str:
    with pytest.raises(FetchFailed) as caught:
        fetch_sync(url, settings)
    return str(caught.value)


def test_fetches_the_body(origin: Origin, media: Media, allowed) -> None:
    assert fetch_sync(origin.url("/photo.jpg"), allowed) == media.original


@pytest.mark.anyio
async def test_async_fetch(origin: Origin, media: Media, allowed) -> None:
    assert await fetch(origin.url("/copy.jpg"), allowed) == media.copy


@pytest.mark.parametrize(("host", "reason"), [
    ("10.0.0.1", "address 10.0.0.1 is private"),
    ("192.168.1.20", "is private"),
    ("172.16.5.4", "is private"),
    ("169.254.169.254", "address 169.254.169.254 is link-local"),
    ("127.0.0.1", "address 127.0.0.1 is loopback"),
    ("localhost", "address 127.0.0.1 is loopback"),
    ("0.0.0.0", "is unspecified"),
    ("224.0.0.1", "is multicast"),
    ("100.64.0.1", "is shared address space"),
    ("240.0.0.1", "is private"),
    ("2130706433", "address 127.0.0.1 is loopback"),  # decimal
    ("0x7f000001", "address 127.0.0.1 is loopback"),  # hex
    ("127.1", "address 127.0.0.1 is loopback"),  # short form
    ("[::1]", "address ::1 is loopback"),
    ("[::]", "is unspecified"),
    ("[::ffff:127.0.0.1]", "is loopback (IPv4 127.0.0.1)"),
    ("[::ffff:169.254.169.254]", "is link-local (IPv4 169.254.169.254)"),
    ("[::127.0.0.1]", "is loopback (IPv4 127.0.0.1)"),
    ("[64:ff9b::a00:1]", "is private (IPv4 10.0.0.1)"),
    ("[2002:a00:1::]", "is private (IPv4 10.0.0.1)"),
    ("[fd00::1]", "is private"),
    ("[fe80::1]", "is link-local"),
    ("[ff02::1]", "is multicast"),
])
def test_private_addresses_are_refused(host: str, reason: str, origin: Origin, strict) -> None:
    message = refused(f"http://{host}:{origin.port}/photo.jpg", strict)
    assert reason in message
    assert message.startswith("refused ")


def test_octal_ip_form_is_refused(origin: Origin, strict) -> None:
    refused(f"http://0177.0.0.1:{origin.port}/photo.jpg", strict)


@pytest.mark.parametrize("target", [
    "http://10.0.0.1/", "http://169.254.169.254/latest/meta-data/", "http://127.0.0.2:{port}/",
    "http://[::1]:{port}/photo.jpg", "ftp://127.0.0.1/x",
])
def test_every_redirect_hop_is_checked(target: str, origin: Origin, allowed) -> None:
    url = origin.url("/redirect?to=" + target.format(port=origin.port))
    message = refused(url, allowed)
    assert "refused" in message or "not allowed" in message


def test_redirect_to_an_allowed_place_is_followed(origin: Origin, media: Media,
                                                  allowed) -> None:
    url = origin.url("/redirect?to=/photo.jpg")
    assert fetch_sync(url, allowed) == media.original


def test_redirect_loops_end(origin: Origin, allowed) -> None:
    assert "too many redirects" in refused(origin.url("/loop"), allowed)


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://example.com/a.jpg",
                                 "gopher://example.com/", "javascript:alert(1)", "http:///x",
                                 "not a url"])
def test_only_http_urls(url: str, strict) -> None:
    message = refused(url, strict)
    assert "scheme" in message or "no host" in message or "invalid URL" in message


def test_non_2xx_is_a_fetch_failure_with_the_status(origin: Origin, allowed) -> None:
    assert "answered HTTP 404" in refused(origin.url("/missing"), allowed)


def test_connection_refused(allowed) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, never listening: connections are refused
        assert "cannot fetch" in refused(f"http://127.0.0.1:{port}/x", allowed)


def test_declared_huge_body_is_refused_unread(origin: Origin, allowed) -> None:
    with pytest.raises(MediaTooLarge, match="declares"):
        fetch_sync(origin.url("/huge-declared"), allowed)


def test_endless_body_stops_at_the_byte_cap(origin: Origin, allowed) -> None:
    with pytest.raises(MediaTooLarge, match=f"cap of {allowed.fetch_max_bytes}"):
        fetch_sync(origin.url("/endless"), allowed)


def test_slow_drip_stops_at_the_total_deadline(origin: Origin, make_settings) -> None:
    """The drip would go on for DRIP_SECONDS; the deadline ends the fetch long before."""
    started = time.monotonic()
    short = make_settings(fetch_total_timeout=SHORT_DEADLINE)
    assert "longer than" in refused(origin.url("/drip?every=0.1"), short)
    assert time.monotonic() - started < DRIP_SECONDS / 2


def test_dns_answers_are_pinned(origin: Origin, media: Media, allowed,
                                monkeypatch: pytest.MonkeyPatch) -> None:
    """A rebinding resolver answers 127.0.0.1 (allowed) once, then 10.0.0.1: the fetch must
    connect to the vetted answer and still send the original Host."""
    real = socket.getaddrinfo
    answers = iter(["127.0.0.1"])

    def rebinding(host, port, *args, **kwargs):
        if host == "shop.test":
            address = next(answers, "10.0.0.1")
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))]
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    assert fetch_sync(origin.url("/photo.jpg", host="shop.test"), allowed) == media.original
    assert origin.hosts[-1] == f"shop.test:{origin.port}"


def test_one_bad_dns_answer_condemns_the_host(strict, monkeypatch: pytest.MonkeyPatch) -> None:
    def mixed(host, port, *args, **kwargs):
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port))
                for a in ("93.184.216.34", "10.0.0.1")]

    monkeypatch.setattr(socket, "getaddrinfo", mixed)
    assert "address 10.0.0.1 is private" in refused("http://cdn.test/a.jpg", strict)


def test_unresolvable_host(strict, monkeypatch: pytest.MonkeyPatch) -> None:
    def nowhere(*args, **kwargs):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", nowhere)
    assert "cannot resolve nowhere.test" in refused("http://nowhere.test/a.jpg", strict)


@pytest.mark.parametrize(("address", "expected"), [
    ("93.184.216.34", None), ("2606:4700:4700::1111", None), ("8.8.8.8", None),
    ("10.1.2.3", "private"), ("::ffff:10.1.2.3", "private (IPv4 10.1.2.3)"),
])
def test_refusal(address: str, expected: str | None) -> None:
    assert refusal(ipaddress.ip_address(address)) == expected


def test_allow_list_admits_only_its_networks() -> None:
    allow = [ipaddress.ip_network("10.1.0.0/16")]
    assert refusal(ipaddress.ip_address("10.1.2.3"), allow) is None
    assert refusal(ipaddress.ip_address("::ffff:10.1.2.3"), allow) is None
    assert refusal(ipaddress.ip_address("10.2.0.1"), allow) == "private"


@pytest.mark.parametrize(("address", "reason"), [
    # IPv4 special-purpose registry, and multicast / broadcast
    ("0.1.2.3", "private"), ("100.64.0.1", "shared address space"),
    ("100.127.255.254", "shared address space"), ("192.0.0.9", "an IETF protocol assignment"),
    ("192.0.0.170", "an IETF protocol assignment"), ("192.0.2.1", "documentation"),
    ("198.51.100.7", "documentation"), ("203.0.113.9", "documentation"),
    ("192.88.99.1", "6to4 relay anycast"), ("198.18.0.1", "benchmarking"),
    ("198.19.255.1", "benchmarking"), ("239.255.255.250", "multicast"), ("240.0.0.1", "private"),
    ("255.255.255.255", "private"),
    # IPv6 special-purpose registry and the deprecated ranges
    ("fec0::1", "site-local"), ("feff:ffff::1", "site-local"), ("fc00::1", "private"),
    ("fe80::1%1", "link-local"), ("ff05::2", "multicast"), ("::", "unspecified"),
    ("::1", "loopback"), ("100::1", "discard-only"), ("2001::1", "an IETF protocol"),
    ("2001:0:4136:e378:8000:63bf:f5ff:fffe", "an IETF protocol"),  # Teredo to 10.0.0.1
    ("2001:2::1", "an IETF protocol"), ("2001:20::1", "an IETF protocol"),
    ("2001:db8::1", "documentation"),
    ("3fff::1", "documentation"), ("5f00::1", "segment routing"),
    ("64:ff9b:1::a00:1", "local-use NAT64"), ("::2", "(IPv4 0.0.0.2)"),
    ("4000::1", "outside global unicast"), ("::ffff:0:808:808", "outside global unicast"),
    # IPv6 forms that carry an IPv4 address: the IPv4 address is vetted
    ("::ffff:192.168.0.1", "private (IPv4 192.168.0.1)"),
    ("::ffff:100.64.0.1", "NAT) (IPv4 100.64.0.1)"),
    ("::169.254.169.254", "link-local (IPv4 169.254.169.254)"),
    ("::8.8.8.8", "outside global unicast"),  # IPv4-compatible: deprecated, never fetched
    ("64:ff9b::7f00:1", "loopback (IPv4 127.0.0.1)"),
    ("64:ff9b::c000:201", "documentation (IPv4 192.0.2.1)"),
    ("2002:c0a8:1::1", "private (IPv4 192.168.0.1)"),
    ("2002:6440:1::1", "NAT) (IPv4 100.64.0.1)"),
])
def test_special_purpose_addresses_are_refused(address: str, reason: str) -> None:
    found = refusal(ipaddress.ip_address(address))
    assert found is not None and reason in found, found


@pytest.mark.parametrize("address", [
    "1.1.1.1", "192.0.3.1", "198.20.0.1", "223.255.255.1", "2a00:1450:4001:81b::200e",
    "2620:4f:8000::1", "::ffff:8.8.8.8", "64:ff9b::808:808", "2002:808:808::1",
])
def test_public_addresses_and_their_ipv6_forms_pass(address: str) -> None:
    assert refusal(ipaddress.ip_address(address)) is None
