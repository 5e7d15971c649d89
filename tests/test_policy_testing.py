"""The pytest plugin and `check --expectations`: policy tests that pass, fail with an explanation, and move time."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from dataplane.cli import main

pytest_plugins = ["pytester"]

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "policy-tests"


@pytest.fixture
def project(pytester: pytest.Pytester) -> pytest.Pytester:
    """A team's repository: the example's scenario and NSG files, and no tests yet."""
    for name in ("scenario.yaml", "nsg-frontend.json", "nsg-backend.json", "expectations.yaml"):
        shutil.copy(EXAMPLE / name, pytester.path / name)
    return pytester


def test_a_passing_policy_test_passes(project: pytest.Pytester) -> None:
    project.makepyfile(test_policy="""
        import pytest

        @pytest.mark.dataplane_scenario("scenario.yaml")
        def test_https_is_public(dp):
            dp.assert_allowed("tcp 198.51.100.23:50123 > 52.170.10.20:443", rule="AllowHttpsFromInternet")
    """)
    project.runpytest().assert_outcomes(passed=1)


def test_a_failing_policy_test_names_the_deciding_rule_and_explains_the_path(project: pytest.Pytester) -> None:
    project.makepyfile(test_policy="""
        import pytest

        @pytest.mark.dataplane_scenario("scenario.yaml")
        def test_ssh_is_open(dp):
            dp.assert_allowed("tcp 198.51.100.23:50124 > 52.170.10.20:22")
    """)
    result = project.runpytest()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([
        "*expected Allow, got Deny by nsg-frontend/DenyAllInBound*",
        "*seen by the NSGs as tcp 198.51.100.23:50124 > 10.20.1.4:22*",
        "*inbound at web-nic: nsg-frontend (subnet vnet-app/frontend) → DenyAllInBound: Deny*",
        "*200 AllowSshFromBastion*✗src*",
        "*65500 DenyAllInBound*← decides*",
    ])
    assert "assert False" not in result.stdout.str()


def test_a_live_flow_survives_its_rule_until_the_clock_passes_the_idle_timeout(project: pytest.Pytester) -> None:
    project.makepyfile(test_policy="""
        import pytest

        @pytest.mark.dataplane_scenario("scenario.yaml")
        def test_api_call_outlives_its_rule(dp, dataplane_clock):
            call = dp.connect("tcp 10.20.1.4:40100 > 10.20.2.4:8443")
            dp.remove_rule("nsg-backend", "AllowApiFromWeb")
            dp.advance(200)
            call.send().assert_allowed()
            assert dataplane_clock.now == 200
            dp.advance(dp.idle_timeout() + 1)
            call.send().assert_denied(rule="nsg-backend/DenyVnetInbound")
    """)
    project.runpytest().assert_outcomes(passed=1)


def test_a_packet_of_a_live_flow_that_was_expected_denied_says_a_flow_record_passed_it(
        project: pytest.Pytester) -> None:
    project.makepyfile(test_policy="""
        import pytest

        @pytest.mark.dataplane_scenario("scenario.yaml")
        def test_removal_cuts_the_call(dp):
            call = dp.connect("tcp 10.20.1.4:40100 > 10.20.2.4:8443")
            dp.remove_rule("nsg-backend", "AllowApiFromWeb")
            call.send().assert_denied()
    """)
    result = project.runpytest()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*expected Deny, got Allow by nsg-backend/AllowApiFromWeb*",
                                 "*belongs to a live flow: no rule was evaluated*"])


def test_scapy_packets_can_be_sent(project: pytest.Pytester) -> None:
    project.makepyfile(test_policy="""
        import pytest
        from scapy.layers.inet import IP, UDP

        @pytest.mark.dataplane_scenario("scenario.yaml")
        def test_dns_to_the_platform_resolver(dp):
            dp.send(IP(src="10.20.2.4", dst="168.63.129.16") / UDP(sport=40000, dport=53)).assert_allowed()
    """)
    project.runpytest().assert_outcomes(passed=1)


def test_the_scenario_can_come_from_the_ini_file(project: pytest.Pytester) -> None:
    project.makeini("[pytest]\ndataplane_scenario = scenario.yaml\n")
    project.makepyfile(test_policy="""
        def test_sql_is_closed_to_the_web_tier(dp):
            dp.assert_denied("tcp 10.20.1.4:40001 > 10.20.2.10:1433")
    """)
    project.runpytest().assert_outcomes(passed=1)


def test_a_test_without_a_scenario_fails_saying_how_to_give_one(project: pytest.Pytester) -> None:
    project.makepyfile(test_policy="""
        def test_anything(dp):
            pass
    """)
    result = project.runpytest()
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*the dp fixture needs a scenario*dataplane_scenario*"])


def test_the_expectations_file_runs_one_test_per_line_and_reports_the_mismatch(project: pytest.Pytester) -> None:
    text = (project.path / "expectations.yaml").read_text()
    (project.path / "expectations.yaml").write_text(
        text.replace("flow: tcp 10.20.1.4:40001 > 10.20.2.10:1433\n    expect: deny",
                     "flow: tcp 10.20.1.4:40001 > 10.20.2.10:1433\n    expect: allow"))
    project.makepyfile(test_policy="""
        from pathlib import Path
        import pytest
        from dataplane.testing import expectation_params

        @pytest.mark.dataplane_scenario("scenario.yaml")
        @pytest.mark.parametrize("expectation", expectation_params(Path(__file__).with_name("expectations.yaml")))
        def test_expectation(dp, expectation):
            dp.expect(expectation)
    """)
    result = project.runpytest("-v")
    result.assert_outcomes(passed=7, failed=1)
    result.stdout.fnmatch_lines([
        "*test_expectation?expectation 4: the web tier never reaches the database? FAILED*",
        "*expected Allow, got Deny by nsg-backend/DenyVnetInbound*",
    ])


def test_check_expectations_exits_0_when_every_expectation_is_met(capsys: pytest.CaptureFixture) -> None:
    status = main(["check", "--scenario", str(EXAMPLE / "scenario.yaml"),
                   "--expectations", str(EXAMPLE / "expectations.yaml")])
    captured = capsys.readouterr()
    assert status == 0
    assert captured.out.count("\nok ") + captured.out.startswith("ok ") == 8
    assert "8 expectations: 8 met, 0 not met" in captured.err


def check_expectations(project: pytest.Pytester, capsys: pytest.CaptureFixture, text: str) -> tuple[int, str, str]:
    path = project.path / "expectations.yaml"
    path.write_text(text)
    status = main(["check", "--scenario", str(project.path / "scenario.yaml"), "--expectations", str(path)])
    out, err = capsys.readouterr()
    return status, out, err


def test_check_expectations_exits_1_and_explains_each_mismatch(project: pytest.Pytester,
                                                                capsys: pytest.CaptureFixture) -> None:
    status, out, err = check_expectations(
        project, capsys, "- {flow: 'tcp 198.51.100.23:50124 > 52.170.10.20:22', expect: allow, name: ssh is open}\n"
                         "- {flow: 'tcp 198.51.100.23:50125 > 52.170.10.20:443', expect: allow, rule: WrongRule}\n")
    assert status == 1
    assert "FAIL  expectation 1 (ssh is open): tcp 198.51.100.23:50124 > 52.170.10.20:22: expected Allow, " \
           "got Deny by nsg-frontend/DenyAllInBound" in out
    assert "expected Allow by WrongRule, got Allow by nsg-frontend/AllowHttpsFromInternet" in out
    assert "← decides" in out
    assert "2 expectations: 0 met, 2 not met" in err


def test_check_expectations_rejects_a_bad_file_naming_the_line_and_key(project: pytest.Pytester,
                                                                       capsys: pytest.CaptureFixture) -> None:
    status, _, err = check_expectations(project, capsys, "- {flow: 'tcp 10.20.1.4:1 > 10.20.2.4:8443', expect: allow}\n"
                                                         "- {flow: 'tcp 10.20.1.4:1 > 10.20.2.4:8443', expected: allow}\n")
    assert status == 2
    assert f"{project.path / 'expectations.yaml'}: expectation 2.expected: unknown key 'expected'" in err
    assert "Traceback" not in err


def test_check_expectations_json_marks_each_line_ok_or_not(capsys: pytest.CaptureFixture) -> None:
    import json

    main(["check", "--scenario", str(EXAMPLE / "scenario.yaml"), "--json",
          "--expectations", str(EXAMPLE / "expectations.yaml")])
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["ok"] for line in lines] == [True] * 8
    assert lines[0]["expectation"] == "expectation 1" and lines[0]["expected"]["rule"] == "nsg-frontend/AllowHttpsFromInternet"


def test_a_policy_test_whose_frame_would_make_scapy_ask_by_arp_fails(pytester: pytest.Pytester) -> None:
    """The inner test's bare `Ether()` is the case under test: it runs in this process, where this suite's
    own guard (tests/conftest.py) already refuses every scapy socket, so no ARP request can leave."""
    pytester.makepyfile("""
        from scapy.layers.inet import IP, TCP
        from scapy.layers.l2 import Ether

        def test_frame_without_a_destination_mac():
            bytes(Ether() / IP(src="10.0.0.1", dst="10.99.0.2") / TCP())
    """)
    result = pytester.runpytest_inprocess()
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["*the test used the network through scapy*"])


def test_a_policy_test_that_tries_to_send_fails_at_once(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("""
        from scapy.layers.inet import IP, TCP
        from scapy.layers.l2 import Ether
        from scapy.sendrecv import sendp

        def test_send():
            sendp(Ether(src="00:00:00:00:00:01", dst="00:00:00:00:00:02") / IP(dst="10.99.0.2") / TCP(),
                  verbose=False)
    """)
    result = pytester.runpytest_inprocess()
    result.assert_outcomes(failed=1, errors=1)
    result.stdout.fnmatch_lines(["*NetworkUse: scapy tried to open a network socket*"])
