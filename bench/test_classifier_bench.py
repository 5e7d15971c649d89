"""The compiled classifier: lookups/s by rule count, compile and recompile time, memory,
a DASH-density NSG. Rule sets are random but seeded; ratios compare figures of the same run."""

from __future__ import annotations

import random
import time
import tracemalloc
from pathlib import Path

import pytest

from dataplane import Direction, NetworkSecurityGroup, Policy, SecurityRule, rule_from_azure
from dataplane.addresses import AddressResolver
from dataplane.classifier import Classifier
from dataplane.rules import DEFAULT_RULES

from figures import FIGURES, rate, ratio
from reference import ReferenceEvaluator, classbench_rules, classbench_trace

LOOKUPS = 20_000
INBOUND = Direction.INBOUND


def random_prefix(rng: random.Random) -> str:
    length = rng.choice([8, 12, 16, 20, 24, 28, 32])
    value = rng.getrandbits(32) & (0xFFFFFFFF << (32 - length)) & 0xFFFFFFFF
    return f"{value >> 24}.{value >> 16 & 255}.{value >> 8 & 255}.{value & 255}/{length}"


def random_ports(rng: random.Random) -> str:
    lo = rng.randint(0, 65535)
    return rng.choice(["*", str(lo), f"{lo}-{min(65535, lo + rng.randint(1, 5000))}"])


def random_nsg(count: int, seed: int) -> NetworkSecurityGroup:
    rng = random.Random(seed)
    return NetworkSecurityGroup(f"nsg{count}", [rule_from_azure({
        "name": f"r{i}", "priority": 100 + i, "direction": "Inbound", "access": rng.choice(["Allow", "Deny"]),
        "protocol": rng.choice(["Tcp", "Udp", "*"]),
        "sourceAddressPrefix": random_prefix(rng), "sourcePortRange": random_ports(rng),
        "destinationAddressPrefix": random_prefix(rng), "destinationPortRange": random_ports(rng)})
        for i in range(count)])


def compiled(nsg: NetworkSecurityGroup) -> Classifier:
    return Policy.for_nsg(nsg, address_space=("10.0.0.0/16",)).classifier(nsg, INBOUND, "vnet")


def keys_hitting(classifier: Classifier, seed: int) -> list[tuple[int, int, int, int, int, int]]:
    """Half the keys inside a random rule's prefixes and ports, half anywhere."""
    rng = random.Random(seed)
    keys = []
    for i in range(LOOKUPS):
        proto = rng.choice([6, 17, 1])
        src, dst = rng.getrandbits(32), rng.getrandbits(32)
        if i % 2:
            rule = rng.choice(classifier.rules[:-3])
            src = _inside(rng.choice(rule.sources), rng)
            dst = _inside(rng.choice(rule.destinations), rng)
        keys.append((proto, 4, src, rng.randint(0, 65535), dst, rng.randint(0, 65535)))
    return keys


def _inside(prefix: str, rng: random.Random) -> int:
    address, length = prefix.split("/")
    a, b, c, d = (int(x) for x in address.split("."))
    base = a << 24 | b << 16 | c << 8 | d
    return base | rng.getrandbits(32 - int(length)) if int(length) < 32 else base


@pytest.mark.parametrize("count", [10, 100, 1000])
def test_lookups_per_second(benchmark, count):
    classifier = compiled(random_nsg(count, seed=count))
    keys = keys_hitting(classifier, seed=1)

    def run():
        lookup = classifier.lookup
        for key in keys:
            lookup(*key)

    benchmark.pedantic(run, rounds=10, iterations=1)
    rate(benchmark, f"lookups, {count} rules", LOOKUPS)
    ratio("lookups 1,000 rules / 100 rules", "lookups, 1000 rules", "lookups, 100 rules", ">= 0.6")


def test_compile_1000_rules(benchmark):
    nsg = random_nsg(1000, seed=3)
    benchmark.pedantic(compiled, args=(nsg,), rounds=5, iterations=1)
    FIGURES["compile, 1,000 rules"] = f"{benchmark.stats.stats.mean * 1000:.0f} ms"


def test_recompile_after_a_rule_change(benchmark):
    """What a rule change costs a running dataplane: the next lookup recompiles the NSG direction."""
    nsg = random_nsg(1000, seed=4)
    policy = Policy.for_nsg(nsg, address_space=("10.0.0.0/16",))
    policy.classifier(nsg, INBOUND, "vnet")
    rules = iter(range(10**6))

    def change_and_lookup():
        i = next(rules)
        nsg.replace_rule({"name": "r500", "priority": 600, "direction": "Inbound", "access": "Deny",
                          "protocol": "Tcp", "sourceAddressPrefix": f"{i % 200 + 1}.0.0.0/8", "sourcePortRange": "*",
                          "destinationAddressPrefix": "*", "destinationPortRange": "22"})
        return policy.classifier(nsg, INBOUND, "vnet").lookup(6, 4, 1 << 24, 1, 2, 22)

    benchmark.pedantic(change_and_lookup, rounds=5, iterations=1)
    FIGURES["rule change → recompiled lookup, 1,000 rules"] = f"{benchmark.stats.stats.mean * 1000:.0f} ms"


def dash_density_rules() -> list[SecurityRule]:
    """1,000 rules, each with 100 source and 100 destination prefixes and 10 port ranges (DASH's
    density target); the NSG-wide 4,000-address limit is Azure's, not the classifier's, so the
    rules are built directly rather than validated as one NSG."""
    rng = random.Random(5)
    rules = []
    for i in range(1000):
        rules.append(rule_from_azure({
            "name": f"dash{i}", "priority": 100 + i, "direction": "Inbound", "access": rng.choice(["Allow", "Deny"]),
            "protocol": rng.choice(["Tcp", "Udp"]),
            "sourceAddressPrefixes": [random_prefix(rng) for _ in range(100)], "sourcePortRange": "*",
            "destinationAddressPrefixes": [random_prefix(rng) for _ in range(100)],
            "destinationPortRanges": sorted({str(rng.randint(1, 65535)) for _ in range(10)})}))
    return rules


def test_dash_density_nsg_compiles_in_under_3_seconds(benchmark):
    rules = dash_density_rules()
    resolver = Policy.for_nsg(NetworkSecurityGroup("empty"), address_space=("10.0.0.0/16",)).resolver("vnet")

    def build():
        return Classifier(rules, resolver)

    classifier = benchmark.pedantic(build, rounds=3, iterations=1)
    FIGURES["compile, DASH density (1,000 × 100 × 100 × 10)"] = f"{benchmark.stats.stats.mean:.2f} s (target <= 3 s)"
    keys = keys_hitting(classifier, seed=2)
    start = time.perf_counter()
    for key in keys:
        classifier.lookup(*key)
    FIGURES["lookups, DASH density"] = f"{LOOKUPS / (time.perf_counter() - start):,.0f}/s"


def test_memory_of_compiled_classifiers(benchmark):
    def measure(rules, resolver):
        tracemalloc.start()
        classifier = Classifier(rules, resolver)
        size = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
        del classifier
        return size

    resolver = Policy.for_nsg(NetworkSecurityGroup("empty"), address_space=("10.0.0.0/16",)).resolver("vnet")
    thousand = random_nsg(1000, seed=6).rules_in_order(INBOUND)
    size = benchmark.pedantic(measure, args=(thousand, resolver), rounds=1, iterations=1)
    FIGURES["memory, compiled 1,000 rules"] = f"{size / 2**20:.1f} MiB"
    FIGURES["memory, compiled DASH density"] = f"{measure(dash_density_rules(), resolver) / 2**20:.1f} MiB"


CLASSBENCH = Path(__file__).resolve().parents[2] / "shared" / "data" / "classbench"


def classbench(name: str):
    if not (CLASSBENCH / name).is_file():
        pytest.skip(f"{CLASSBENCH / name} not found: the shared data folder sits beside the repository")
    rules, _ = classbench_rules(CLASSBENCH / name)
    return rules + [r for r in DEFAULT_RULES if r.direction == INBOUND]


@pytest.mark.parametrize("name", ["acl1_1k", "fw1_1k", "ipc1_1k"])
@pytest.mark.parametrize("evaluator", ["compiled", "reference"])
def test_classbench_trace(benchmark, name, evaluator):
    rules = classbench(name)
    trace = [(h.proto, 4, h.src, h.sport, h.dst, h.dport) for h in classbench_trace(CLASSBENCH / f"{name}_trace")]
    if evaluator == "compiled":
        lookup = Classifier(rules, AddressResolver(["10.0.0.0/16"])).lookup
    else:
        lookup = ReferenceEvaluator(rules).first_match
        trace = trace[::10]

    def run():
        for key in trace:
            lookup(*key)

    benchmark.pedantic(run, rounds=3 if evaluator == "compiled" else 1, iterations=1)
    rate(benchmark, f"{name} trace, {evaluator}", len(trace))
    ratio(f"{name}: compiled / reference", f"{name} trace, compiled", f"{name} trace, reference", ">= 30")


@pytest.mark.parametrize("name", ["acl1_10k", "fw1_10k"])
def test_classbench_10k_compile_and_lookups(benchmark, name):
    """No Azure limit applies to the classifier itself: 10k rules compile and look up as 1k do."""
    rules = classbench(name)
    classifier = benchmark.pedantic(Classifier, args=(rules, AddressResolver(["10.0.0.0/16"])), rounds=1,
                                    iterations=1)
    FIGURES[f"compile, {name}"] = f"{benchmark.stats.stats.mean:.2f} s"
    keys = keys_hitting(classifier, seed=9)
    start = time.perf_counter()
    for key in keys:
        classifier.lookup(*key)
    FIGURES[f"lookups, {name}"] = f"{LOOKUPS / (time.perf_counter() - start):,.0f}/s"
