"""Address resolution: what VirtualNetwork, Internet, AzureLoadBalancer and the ServiceTags file's tags mean."""

from __future__ import annotations

import pytest

from dataplane.addresses import (PLATFORM_TAGS, AddressResolver, ServiceTags, bundled_service_tags, ipset_ranges,
                                 is_in)
from dataplane.errors import RuleError
from dataplane.topology import scenario_from_document

from datafiles import SERVICE_TAGS, need


def resolver(*space: str, tags: ServiceTags | None = None) -> AddressResolver:
    return AddressResolver(space, service_tags=tags)


@pytest.mark.parametrize("address, inside", [("13.107.21.200", True), ("203.0.113.7", True),
                                              ("172.31.0.100", False), ("10.9.9.9", False),
                                              ("100.64.0.1", False), ("2001:db8::1", True), ("fd00::1", False)])
def test_internet_is_public_unicast_space(address: str, inside: bool) -> None:
    assert is_in(resolver("10.0.0.0/16").resolve("Internet"), address) is inside


def test_internet_excludes_the_virtual_network_even_when_it_is_public_space() -> None:
    assert not is_in(resolver("20.40.0.0/16").resolve("Internet"), "20.40.1.1")


def test_virtual_network_is_the_address_space_and_the_host_ip_never_all_private_ranges() -> None:
    vnet = resolver("10.0.0.0/16").resolve("VirtualNetwork")
    assert is_in(vnet, "10.0.5.5") and is_in(vnet, "168.63.129.16")
    assert not is_in(vnet, "192.168.1.1") and not is_in(vnet, "10.1.0.1")


def test_virtual_network_includes_peered_vnets() -> None:
    scenario = scenario_from_document({"virtual_networks": [
        {"name": "hub", "address_space": ["10.0.0.0/16"], "peerings": ["spoke"]},
        {"name": "spoke", "address_space": ["10.1.0.0/16"]}]})
    assert is_in(scenario.resolver("hub").resolve("VirtualNetwork"), "10.1.2.3")


def test_azure_load_balancer_is_the_host_ip_alone() -> None:
    ranges = resolver("10.0.0.0/16").resolve("AzureLoadBalancer")
    assert ranges == (((0xA83F8110, 0xA83F8110),), ())


@pytest.mark.parametrize("tag", ["AzurePlatformDNS", "AzurePlatformIMDS", "AzurePlatformLKM", "AzureLoadBalancer"])
def test_a_platform_tag_resolves_to_its_addresses_as_netaddr_reads_them(tag: str) -> None:
    from netaddr import IPSet

    assert resolver("10.0.0.0/16").resolve(tag) == ipset_ranges(IPSet(PLATFORM_TAGS[tag.lower()]))


def test_a_tag_of_the_bundled_file_resolves_case_insensitively() -> None:
    tags = bundled_service_tags()
    assert resolver(tags=tags).resolve("storage") == resolver(tags=tags).resolve("Storage")
    assert is_in(resolver(tags=tags).resolve("AzureCloud"), tags.get("AzureCloud")[0].split("/")[0])


def test_a_regional_tag_resolves_from_azures_full_file() -> None:
    tags = ServiceTags.from_file(need(SERVICE_TAGS / "ServiceTags_Public_20251106.json.gz"))
    ranges = resolver(tags=tags).resolve("Storage.WestEurope")
    assert ranges[0] and is_in(ranges, tags.get("Storage.WestEurope")[0].split("/")[0])


def test_an_unknown_tag_is_an_error_naming_it() -> None:
    with pytest.raises(RuleError, match="unknown service tag 'NotATag'") as info:
        resolver(tags=bundled_service_tags()).resolve("NotATag", rule="AllowX", field="sourceAddressPrefix")
    assert (info.value.rule, info.value.field) == ("AllowX", "sourceAddressPrefix")
