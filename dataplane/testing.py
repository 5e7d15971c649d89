"""Policy tests as code: a pytest plugin (entry point `pytest11`, loaded when the package is installed).

    @pytest.mark.dataplane_scenario("scenario.yaml")          # relative to the test file
    def test_ssh_from_the_internet_is_denied(dp):
        dp.check("tcp 198.51.100.7:50000 > 20.50.1.10:22").assert_denied(rule="DenyAllInBound")

    def test_a_live_session_survives_the_removal_of_its_rule(dp):
        session = dp.connect("tcp 203.0.113.50:50000 > 20.50.1.10:22")
        dp.remove_rule("nsg-jump", "AllowSshFromOffice")
        session.send().assert_allowed()
        dp.advance_past_idle_timeout()
        session.send().assert_denied()

`dp` is a `PolicyHarness` on a fresh `Dataplane`; its clock starts at 0 and moves only when the
test moves it. A failed assertion prints the flow, the decision, the evaluations on the path and
every rule with the fields it matched, as `dataplane explain` does.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator, NamedTuple

import pytest

from .conntrack import Timeouts
from .decode import Packet
from .errors import DataplaneError
from .expectations import Expectation, explanation_text, load_expectations
from .flows import Flow, parse_flow, tcp_flag_bits
from .pipeline import Dataplane, Verdict
from .flows import key_to_flow
from .policy import Decision
from .rules import SecurityRule
from .topology import Scenario, load_scenario

ECHO_REQUEST = {4: 8, 6: 128}
TIMEOUT_KEYS = {"tcp": "tcp_established", "udp": "udp", "icmp": "icmp"}


class Clock:
    """The capture clock of a test: it moves only when the test says so."""

    def __init__(self, now: float = 0.0):
        self.now = now

    def advance(self, seconds: float) -> float:
        if seconds < 0:
            raise ValueError(f"the clock only moves forward, not by {seconds}")
        self.now += seconds
        return self.now


class Result(NamedTuple):
    """A decision (stateless `check`) or a verdict (stateful `send`), with assertions that explain."""

    flow: Flow
    decision: str
    nsg: str | None
    rule: str | None
    reason: str
    harness: "PolicyHarness"
    verdict: Verdict | None = None

    @property
    def allowed(self) -> bool:
        return self.decision == "Allow"

    def assert_allowed(self, *, rule: str | None = None) -> "Result":
        return self._assert("Allow", rule)

    def assert_denied(self, *, rule: str | None = None) -> "Result":
        return self._assert("Deny", rule)

    def _assert(self, expected: str, rule: str | None) -> "Result":
        names = {self.rule, f"{self.nsg}/{self.rule}"} if self.rule else set()
        if self.decision != expected or (rule is not None and rule not in names):
            wanted = expected + (f" by {rule}" if rule else "")
            raise AssertionError(f"expected {wanted}, got {self._by()}\n{self.report()}")
        return self

    def _by(self) -> str:
        return self.decision + (f" by {self.nsg}/{self.rule}" if self.rule else f" ({self.reason})")

    def report(self) -> str:
        """What `explain` would show; for a packet of a live flow, the flow record that passed it."""
        lines = []
        v = self.verdict
        if v is not None:
            lines.append(f"packet at t={v.ts:g}: {self.flow}: {self._by()} (reason: {v.reason}) at NIC {v.nic}, "
                         f"{v.direction}" + (f", flow state {v.state}" if v.state else ""))
            if v.reason in ("flow", "related", "fragment"):
                lines.append("the packet belongs to a live flow: no rule was evaluated (flows outlive rule changes "
                             "until idle, unless the NSG flushes connections)")
                return "\n".join(lines)
            if v.decision == "Skip":
                return "\n".join(lines + [f"skipped: {v.detail}"])
        try:
            decision, nsgs = self.harness.dataplane.policy.explain(self.flow)
        except DataplaneError as e:
            return "\n".join(lines + [str(e)])
        return "\n".join(lines + [explanation_text(decision, nsgs)])


class Connection:
    """One TCP connection driven packet by packet: the client's flow and the reply path it learned."""

    def __init__(self, harness: "PolicyHarness", flow: Flow, reply: Flow):
        self.harness = harness
        self.flow = flow
        self.reply_flow = reply

    def send(self, flags: str = "PA") -> Result:
        """A packet from the client."""
        return self.harness.send(self.flow, flags=flags)

    def reply(self, flags: str = "PA") -> Result:
        """A packet from the server, as it leaves the server (before any translation back)."""
        return self.harness.send(self.reply_flow, flags=flags)

    def close(self) -> list[Result]:
        """FIN from the client, FIN-ACK from the server, the last ACK; each must pass."""
        return [step.assert_allowed() for step in (self.send("FA"), self.reply("FA"), self.send("A"))]


class PolicyHarness:
    """A Dataplane, a clock, and helpers that read well in a test."""

    def __init__(self, dataplane: Dataplane, clock: Clock | None = None):
        self.dataplane = dataplane
        self.clock = clock or Clock()

    @classmethod
    def from_file(cls, path: str | Path, clock: Clock | None = None) -> "PolicyHarness":
        return cls(Dataplane(load_scenario(path)), clock)

    @property
    def scenario(self) -> Scenario:
        return self.dataplane.scenario

    def check(self, flow: str | Flow) -> Result:
        """Decide a new connection statelessly (`dataplane check --scenario`); the flow tables are untouched."""
        flow = _flow(flow)
        return self._decided(flow, self.dataplane.check(flow))

    def assert_allowed(self, flow: str | Flow, *, rule: str | None = None) -> Result:
        return self.check(flow).assert_allowed(rule=rule)

    def assert_denied(self, flow: str | Flow, *, rule: str | None = None) -> Result:
        return self.check(flow).assert_denied(rule=rule)

    def expect(self, expectation: Expectation) -> Result:
        """One line of an expectations file, as a test."""
        result = self.check(expectation.flow)
        return result._assert(expectation.expect, expectation.rule)

    def send(self, packet: str | Flow | Any, *, flags: str | None = None) -> Result:
        """One packet through the stateful dataplane at the clock's time: a flow in the notation (TCP
        without flags= sends a SYN) or a scapy packet (Ether first, or IP / IPv6 first)."""
        if isinstance(packet, (str, Flow)):
            flow = _flow(packet)
            verdict = self.dataplane.process(_packet(flow, flags), self.clock.now)
        else:
            verdict = self.dataplane.process(packet, self.clock.now)
            if verdict.packet is None:
                raise AssertionError(f"the packet was not decided: {verdict.reason}: {verdict.detail}")
            p = verdict.packet
            flow = key_to_flow((p.proto, p.version, p.src, p.sport, p.dst, p.dport))
        return Result(flow, verdict.decision, verdict.nsg, verdict.rule, verdict.reason, self, verdict)

    def connect(self, flow: str | Flow) -> Connection:
        """A TCP handshake (SYN, SYN-ACK, ACK); fails, with the explanation, if any step is not allowed."""
        flow = _flow(flow)
        if flow.protocol != 6:
            raise ValueError(f"{flow}: connect() runs a TCP handshake; send() other protocols")
        syn = self.send(flow, flags="S").assert_allowed()
        leaving = key_to_flow(syn.verdict.translated) if syn.verdict.translated is not None else flow
        reply = leaving.reversed()
        self.send(reply, flags="SA").assert_allowed()
        self.send(flow, flags="A").assert_allowed()
        return Connection(self, flow, reply)

    def advance(self, seconds: float) -> None:
        """Move the clock; flows idle past their timeout end now."""
        self.dataplane.advance(self.clock.advance(seconds))

    def idle_timeout(self, protocol: str = "tcp") -> float:
        """The longest idle timeout of a live flow of the protocol at any NIC of the scenario."""
        key = TIMEOUT_KEYS[protocol.lower()]
        scenario = self.scenario
        return max(Timeouts(scenario.timeouts, scenario.virtual_networks[nic.vnet].flow_timeout_minutes).values[key]
                   for nic in scenario.network_interfaces.values())

    def advance_past_idle_timeout(self, protocol: str = "tcp") -> None:
        self.advance(self.idle_timeout(protocol) + 1)

    def add_rule(self, nsg: str, rule: SecurityRule | dict) -> SecurityRule:
        return self.dataplane.add_rule(nsg, rule, now=self.clock.now)

    def replace_rule(self, nsg: str, rule: SecurityRule | dict) -> SecurityRule:
        return self.dataplane.replace_rule(nsg, rule, now=self.clock.now)

    def remove_rule(self, nsg: str, name: str) -> SecurityRule:
        return self.dataplane.remove_rule(nsg, name, now=self.clock.now)

    def flow_count(self) -> int:
        return sum(self.dataplane.flow_counts().values())

    def _decided(self, flow: Flow, decision: Decision) -> Result:
        return Result(flow, decision.decision, decision.nsg, decision.rule, decision.reason, self)


def expectation_params(path: str | Path) -> list:
    """An expectations file as `pytest.mark.parametrize` values, one test per line, named by it."""
    return [pytest.param(e, id=f"{e.where}: {e}") for e in load_expectations(path)]


def _flow(flow: str | Flow) -> Flow:
    return parse_flow(flow) if isinstance(flow, str) else flow


def _packet(flow: Flow, flags: str | None) -> Packet:
    """The decoded packet a flow in the notation stands for: what the dataplane's decoder would give."""
    version = flow.version
    icmp_type = icmp_code = -1
    if flow.protocol in (1, 58):
        icmp_type = flow.icmp_type if flow.icmp_type is not None else ECHO_REQUEST[version]
        icmp_code = flow.icmp_code or 0
    tcp_flags = tcp_flag_bits(flags if flags is not None else flow.flags or "S") if flow.protocol == 6 else 0
    return Packet(version, flow.protocol, int(flow.src), int(flow.dst), flow.sport, flow.dport, tcp_flags,
                  icmp_type, icmp_code, 0, 60, 0, 0, False, False, (), None)


# -- the pytest plugin -------------------------------------------------------------------------------

def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("dataplane", "Azure NSG policy tests")
    group.addoption("--dataplane-scenario", metavar="FILE",
                    help="scenario file for the `dp` fixture when a test has no dataplane_scenario marker")
    parser.addini("dataplane_scenario", "scenario file for the `dp` fixture (relative to the ini file)")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "dataplane_scenario(path): the scenario file the `dp` fixture loads, "
                                       "relative to the test file")


class NetworkUse(Exception):
    """A test tried to put a packet on the machine's network, or to read one from it."""


@pytest.fixture(autouse=True)
def dataplane_no_network(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Fails any test that makes scapy open a socket: sending, sniffing, or the ARP or neighbour request
    scapy sends to resolve the MAC of an `Ether()` built without `dst`. Scapy swallows the error
    while resolving, so the attempt is also reported when the test ends."""
    from scapy import supersocket
    from scapy.config import conf

    attempts: list[str] = []

    def refused(name: str) -> type:
        class Refused:
            def __init__(self, *args: Any, **kwargs: Any):
                attempts.append(name)
                raise NetworkUse(f"scapy tried to open a network socket ({name}): tests never send, sniff or "
                                 "resolve; give every Ether() explicit src and dst MACs")
        return Refused

    for name in ("L2socket", "L2listen", "L3socket", "L3socket6"):
        monkeypatch.setattr(conf, name, refused(f"conf.{name}"))
    for name in ("L3RawSocket", "L3RawSocket6"):
        monkeypatch.setattr(supersocket, name, refused(name), raising=False)
    yield
    if attempts:
        pytest.fail(f"the test used the network through scapy: {', '.join(attempts)}", pytrace=False)


@pytest.fixture
def dataplane_clock() -> Clock:
    return Clock()


@pytest.fixture
def dp(request: pytest.FixtureRequest, dataplane_clock: Clock) -> PolicyHarness:
    """A fresh Dataplane on the test's scenario: marker, then --dataplane-scenario, then the ini value."""
    path = _scenario_path(request)
    try:
        return PolicyHarness(Dataplane(load_scenario(path)), dataplane_clock)
    except DataplaneError as e:
        pytest.fail(f"dataplane scenario: {e}", pytrace=False)


def _scenario_path(request: pytest.FixtureRequest) -> Path:
    marker = request.node.get_closest_marker("dataplane_scenario")
    if marker is not None:
        if len(marker.args) != 1:
            pytest.fail("@pytest.mark.dataplane_scenario takes one path", pytrace=False)
        return Path(request.node.path).parent / marker.args[0]
    config = request.config
    option = config.getoption("--dataplane-scenario")
    if option:
        return Path(option)
    ini = config.getini("dataplane_scenario")
    if ini:
        return Path(config.inipath).parent / ini if config.inipath else Path(ini)
    pytest.fail("the dp fixture needs a scenario: mark the test with @pytest.mark.dataplane_scenario(PATH), "
                "or pass --dataplane-scenario FILE, or set dataplane_scenario in the pytest ini", pytrace=False)
