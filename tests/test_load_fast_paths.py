"""The shortcuts of scenario loading give what the general paths give: documents and scalars read as PyYAML
reads them, dotted quads as `ipaddress` reads them, VirtualNetwork, Internet and ASGs as netaddr computes
them, and the bundled service tags as the file holds them."""

from __future__ import annotations

import gc
import gzip
import ipaddress
import json
import math
from importlib import resources

import pytest
import yaml
from hypothesis import example, given
from hypothesis import strategies as st
from netaddr import IPSet

from dataplane.addresses import NOTHING, AddressResolver, ServiceTags, _builtin_ranges_netaddr, ipset_ranges
from dataplane.documents import parse_yaml
from dataplane.errors import DataplaneError
from dataplane.rules import Prefix, parse_prefix

# Characters that make YAML 1.1 scalars bools, nulls, ints (0x, 0b, 0o, 1_000, 1:20), floats and timestamps.
_SCALAR_CHARS = "0123456789_:.-+xXbBoOeEyYnNtTfFaAlLsSuUrR~<=*/ Zz"
scalars = st.text(alphabet=_SCALAR_CHARS, max_size=12) | st.sampled_from([
    "yes", "No", "ON", "off", "y", "n", "true", "False", "null", "Null", "~", "", "0", "00", "09", "0o17", "0x1F",
    "0b101", "1_000", "1:20", "190:20:30", "-1:20", "+12", "1.5", ".5", "1e3", "1.0e+3", ".inf", "-.Inf", ".NaN",
    "2001-12-14", "2001-12-14t21:59:43.10-05:00", "2001-12-14 21:59:43.10 -5", "<<", "=", "Tcp", "nsg-web",
])


_LIBYAML = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # the parser parse_yaml uses for such shallow texts


def _has_key(doc: object, key: str) -> bool:
    if isinstance(doc, dict):
        return key in doc or any(_has_key(v, key) for v in doc.values())
    return isinstance(doc, list) and any(_has_key(v, key) for v in doc)


def _same(a: object, b: object) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if isinstance(a, dict) and isinstance(b, dict):
        return len(a) == len(b) and all(_same(ka, kb) and _same(a[ka], b[kb]) for ka, kb in zip(a, b))
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(map(_same, a, b))
    return type(a) is type(b) and a == b


@given(st.lists(st.tuples(scalars, scalars), min_size=1, max_size=6))
@example([("name", "Tcp"), ("name", "100"), ("priority", "0100"), ("x", "1_0"), ("y", "yes")])
def test_scalars_read_as_pyyaml_reads_them(pairs: list[tuple[str, str]]) -> None:
    """PyYAML's safe loading with libyaml (which parses some flow texts PyYAML's own parser takes, `[0:]`,
    as errors) gives the same, a key `=` aside: SafeConstructor reads it as '=', the plain builder refuses it
    (as before these shortcuts)."""
    for text in ("\n".join(f"- {value}" for _, value in pairs),
                 "\n".join(f"k{i}{key}: {value}" for i, (key, value) in enumerate(pairs)),
                 "\n".join(f"- {key}: [{value}, '{value}']" for key, value in pairs)):
        try:
            expected = yaml.load(text, Loader=_LIBYAML)
        except (yaml.YAMLError, ValueError, TypeError):
            with pytest.raises(DataplaneError):
                parse_yaml(text)
            continue
        if _has_key(expected, "="):
            continue
        assert _same(parse_yaml(text), expected), text


documents = st.recursive(
    scalars | st.text(max_size=8) | st.integers() | st.booleans() | st.none() | st.floats(allow_nan=False),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(scalars | st.text(max_size=6), inner, max_size=4),
    max_leaves=20)


@given(documents, st.sampled_from([None, True, False]), st.sampled_from([None, "'", '"']))
@example({"<<": {"a": 1}, "b": 2}, False, None)
def test_documents_read_as_pyyaml_reads_them(doc: object, flow: bool | None, style: str | None) -> None:
    """Built from the parser's events, a document is what PyYAML's composer and constructor make of it,
    in block and flow style, plain or quoted; a merge key goes to them."""
    text = yaml.safe_dump(doc, default_flow_style=flow, default_style=style, allow_unicode=True)
    assert _same(parse_yaml(text), yaml.load(text, Loader=_LIBYAML)), text


@pytest.mark.parametrize("text", [
    "", "# nothing\n", "just text\n", "--- 5\n...\n", "%YAML 1.1\n---\na: 1\n", "a: !!str 1\nb: !!int '7'\n",
    "!!map {a: 1}\n", "a: ! 1\n", "<<: {x: 1}\ny: 2\n", "? [a, b]\n: 1\n", "a: 1\n---\nb: 2\n",
    "a: *undefined\n", "{a: 1, a: 2}\n", "[1, [2, [3, {b: [~, yes, 0x1F, 1:20, 2001-12-14]}]]]\n",
    "a: !custom 1\n", "= : 1\n", "a: =\n", "a: 1\r\nb:\r\n  - x\r\n", "\ufeffa: 1\n", "a: 'x\n  y'\nb: |\n  z\n",
])
def test_texts_outside_the_plain_builder_read_as_pyyaml_reads_them(text: str) -> None:
    try:
        expected = yaml.load(text, Loader=_LIBYAML)
    except yaml.YAMLError:
        with pytest.raises(DataplaneError):
            parse_yaml(text)
        return
    assert _same(parse_yaml(text), expected)


def _by_ipaddress(text: str) -> Prefix | None:
    """parse_prefix as it was before its dotted-quad shortcut."""
    if "%" in text or ("/" in text and not text.partition("/")[2].isdigit()):
        return None
    try:
        net = ipaddress.ip_network(text, strict=False)
    except ValueError:
        return None
    return Prefix(net.version, int(net.network_address), int(net.broadcast_address))


quads = st.builds(lambda octets, length: ".".join(map(str, octets)) + ("" if length is None else f"/{length}"),
                  st.lists(st.integers(0, 256), min_size=4, max_size=4), st.none() | st.integers(0, 33))


@given(quads | st.text(alphabet="0123456789./:", max_size=20))
@example("010.0.0.1")
@example("1.2.3.4/024")
@example("1.2.3.4/255.255.255.0")
@example("255.255.255.255/32")
def test_dotted_quads_read_as_ipaddress_reads_them(text: str) -> None:
    assert parse_prefix.__wrapped__(text) == _by_ipaddress(text)


v6_prefixes = st.builds(lambda address, length: f"{address}" + ("" if length is None else f"/{length}"),
                        st.ip_addresses(v=6), st.none() | st.integers(0, 128))
v6_spaces = st.sampled_from(["2000::/3", "2001:db8::/32", "fd00:10::/48", "::ffff:10.0.0.0/104", "2001:db8::7/64"])


@given(st.lists(quads | v6_prefixes | v6_spaces, max_size=5))
def test_builtin_tags_as_netaddr_computes_them(space: list[str]) -> None:
    """VirtualNetwork and Internet of address spaces of either family (Internet less the VNet's public
    IPv6 space too)."""
    space = [item for item in space if _by_ipaddress(item) is not None]
    assert AddressResolver(space)._builtin == _builtin_ranges_netaddr(tuple(space))


@given(st.lists(st.ip_addresses().map(str) | quads | v6_prefixes, min_size=1, max_size=6))
def test_an_asg_resolves_as_netaddr_joins_its_members(members: list[str]) -> None:
    members = [item for item in members if _by_ipaddress(item) is not None]
    assert AddressResolver(asgs={"AsgWeb": members}).resolve_asg("asgweb") == (
        ipset_ranges(IPSet(members)) if members else NOTHING)


def test_bundled_service_tags_read_on_first_use_as_the_file_holds_them() -> None:
    tags = ServiceTags.bundled()
    assert "_tags" not in vars(tags)
    data = resources.files("dataplane").joinpath("data/servicetags-global.json.gz").read_bytes()
    eager = ServiceTags.from_document(json.loads(gzip.decompress(data)), source="bundled")
    assert tags.get("Storage") == eager.get("Storage") and len(tags) == len(eager)
    assert tags.change_number == eager.change_number and tags._tags == eager._tags
    with pytest.raises(AttributeError, match="'ServiceTags' object has no attribute 'nothing'"):
        tags.nothing  # noqa: B018


@pytest.mark.parametrize("enabled", [True, False])
@pytest.mark.parametrize("text", ["a: [1, b]", "a: [1, b", "a: &x 1\nb: *x"])
def test_yaml_parsing_leaves_the_collector_as_it_found_it(enabled: bool, text: str) -> None:
    """Parsing pauses garbage collection, and gives back the state it found, also on an error."""
    was = gc.isenabled()
    (gc.enable if enabled else gc.disable)()
    try:
        try:
            parse_yaml(text)
        except DataplaneError:
            pass
        assert gc.isenabled() is enabled
    finally:
        (gc.enable if was else gc.disable)()
