"""ingest_mw.clientip: whose address a request is counted against, with plain values."""

from __future__ import annotations

import ipaddress

import pytest
from clients import PREFIX, make_client

import ingest_mw.clientip as clientip
from ingest_mw import BetterStackAPI, MemorySink, RateLimit
from ingest_mw.clientip import FORWARDED, TrustedProxies, forwarded_chain, parse_address

PROXY = "10.0.0.7"
CLIENT = "203.0.113.9"
SPOOF = "198.51.100.1"


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        ("203.0.113.9", "203.0.113.9"),
        ("  203.0.113.9 ", "203.0.113.9"),
        ("203.0.113.9:4711", "203.0.113.9"),
        ("2001:db8::17", "2001:db8::17"),
        ("[2001:db8::17]:4711", "2001:db8::17"),
        ('"[2001:DB8::17]:4711"', "2001:db8::17"),
        ("[2001:db8::17]", "2001:db8::17"),
        ("::ffff:203.0.113.9", "203.0.113.9"),  # IPv4 on a dual-stack socket
        ("unknown", None),
        ("_hidden", None),
        ("", None),
        ("not an address", None),
    ],
)
def test_parse_address_reads_what_proxies_write(entry, expected):
    address = parse_address(entry)
    assert (None if address is None else str(address)) == expected


def test_forwarded_chain_reads_each_header_its_way():
    headers = {
        "x-forwarded-for": "192.0.2.1, 192.0.2.2",
        "forwarded": 'for=192.0.2.60;proto=http;by=203.0.113.43, For="[2001:db8:cafe::17]:4711", proto=https',
    }
    assert [e.strip() for e in forwarded_chain(headers)] == ["192.0.2.1", "192.0.2.2"]
    assert forwarded_chain(headers, FORWARDED) == ["192.0.2.60", '"[2001:db8:cafe::17]:4711"', ""]
    assert forwarded_chain({}) == []


def test_without_trusted_proxies_the_peer_is_the_client_whatever_the_headers_say():
    proxies = TrustedProxies()
    assert proxies.client_ip(CLIENT, {"x-forwarded-for": SPOOF}) == CLIENT


def test_an_untrusted_peer_cannot_name_another_client():
    proxies = TrustedProxies(["10.0.0.0/8"])
    assert proxies.client_ip(CLIENT, {"x-forwarded-for": SPOOF}) == CLIENT


def test_a_trusted_proxy_names_the_client_and_what_the_client_wrote_is_ignored():
    proxies = TrustedProxies(["10.0.0.0/8"])
    # The client sent "X-Forwarded-For: SPOOF"; the proxy appended the address it saw.
    assert proxies.client_ip(PROXY, {"x-forwarded-for": f"{SPOOF}, {CLIENT}"}) == CLIENT


def test_a_chain_of_trusted_proxies_is_walked_from_the_right():
    proxies = TrustedProxies(["10.0.0.0/8", "2001:db8:1::/48"])
    headers = {"x-forwarded-for": f"{SPOOF}, {CLIENT}, 2001:db8:1::5, 10.1.2.3"}
    assert proxies.client_ip(PROXY, headers) == CLIENT


def test_when_every_hop_is_trusted_the_first_one_is_the_client():
    proxies = TrustedProxies(["10.0.0.0/8"])
    assert proxies.client_ip(PROXY, {"x-forwarded-for": "10.9.9.9, 10.1.1.1"}) == "10.9.9.9"


def test_a_trusted_proxy_without_a_header_is_the_client():
    assert TrustedProxies(["10.0.0.0/8"]).client_ip(PROXY, {}) == PROXY


@pytest.mark.parametrize("entry", ["unknown", "garbage", ""])
def test_a_hop_without_an_address_stops_the_walk_at_the_proxy_that_wrote_it(entry):
    proxies = TrustedProxies(["10.0.0.0/8"])
    headers = {"x-forwarded-for": f"{CLIENT}, {entry}, 10.1.1.1"}
    assert proxies.client_ip(PROXY, headers) == "10.1.1.1"


def test_forwarded_is_read_when_configured():
    proxies = TrustedProxies(["10.0.0.0/8"], header="Forwarded")
    headers = {"forwarded": f'for={SPOOF}, for="[2001:db8::9]:4711";proto=https, for=10.1.1.1'}
    assert proxies.client_ip(PROXY, headers) == "2001:db8::9"
    assert proxies.client_ip(PROXY, {"forwarded": f"for={CLIENT}", "x-forwarded-for": SPOOF}) == CLIENT


def test_only_the_configured_header_is_believed():
    # A proxy that writes X-Forwarded-For passes a client's Forwarded through, and vice versa.
    headers = {"x-forwarded-for": CLIENT, "forwarded": f"for={SPOOF}"}
    assert TrustedProxies([PROXY]).client_ip(PROXY, headers) == CLIENT
    assert TrustedProxies([PROXY], header=FORWARDED).client_ip(PROXY, headers) == SPOOF


def test_an_ipv4_mapped_peer_matches_ipv4_networks():
    proxies = TrustedProxies(["10.0.0.0/8"])
    assert proxies.client_ip("::ffff:10.0.0.7", {"x-forwarded-for": CLIENT}) == CLIENT
    assert TrustedProxies().client_ip("::ffff:203.0.113.9", {}) == CLIENT


def test_addresses_come_back_normalised():
    assert TrustedProxies().client_ip("2001:DB8:0::1", {}) == "2001:db8::1"


def test_peers_that_are_not_addresses():
    proxies = TrustedProxies(["10.0.0.0/8"])
    assert proxies.client_ip(None, {"x-forwarded-for": CLIENT}) is None
    assert proxies.client_ip("", {"x-forwarded-for": CLIENT}) is None
    assert proxies.client_ip("unix-socket", {"x-forwarded-for": CLIENT}) == "unix-socket"


def test_networks_may_be_strings_network_objects_or_one_string():
    assert TrustedProxies("10.0.0.0/8").networks == (ipaddress.ip_network("10.0.0.0/8"),)
    given = [ipaddress.ip_network("192.0.2.0/24"), "2001:db8::1"]
    assert TrustedProxies(given).networks == (
        ipaddress.ip_network("192.0.2.0/24"),
        ipaddress.ip_network("2001:db8::1/128"),
    )


@pytest.mark.parametrize(
    ("networks", "header"),
    [
        (["10.0.0.1/8"], "x-forwarded-for"),  # host bits set: which network was meant?
        (["10.0.0.0/33"], "x-forwarded-for"),
        (["nope"], "x-forwarded-for"),
        ([], "x-real-ip"),
    ],
)
def test_mistakes_in_the_trust_list_fail_loudly(networks, header):
    with pytest.raises(ValueError):
        TrustedProxies(networks, header=header)


def test_a_requests_forwarded_chain_is_walked_once_however_often_it_is_asked(monkeypatch):
    # The flow asks twice per request (its admission, then the rate limit): one walk.
    walks = []
    real = clientip.forwarded_chain

    def counted(headers, header):
        walks.append(headers.get(header))
        return real(headers, header)

    monkeypatch.setattr(clientip, "forwarded_chain", counted)
    limit = RateLimit(limit="100/minute", trusted_proxies=["127.0.0.0/8"])
    client = make_client("wsgi", BetterStackAPI(["tok"], rate_limit=limit), MemorySink())
    for forwarded in ("203.0.113.7", "203.0.113.8"):
        headers = {"Authorization": "Bearer tok", "Content-Type": "application/json", "X-Forwarded-For": forwarded}
        assert client.request("POST", f"{PREFIX}/", b"{}", headers).status == 202
    assert walks == ["203.0.113.7", "203.0.113.8"]
    proxies = TrustedProxies(["10.0.0.0/8"])
    same = {"x-forwarded-for": "198.51.100.1"}
    assert proxies.client_ip("10.0.0.1", same) == proxies.client_ip("10.0.0.1", same) == "198.51.100.1"
    assert proxies.client_ip("10.0.0.1", {"x-forwarded-for": "198.51.100.2"}) == "198.51.100.2"  # other headers
    assert proxies.client_ip("192.0.2.1", same) == "192.0.2.1"  # another peer, untrusted
