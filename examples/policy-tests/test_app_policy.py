"""Policy tests for the app's NSGs: run with `pytest` once `dataplane` is installed (its plugin gives `dp`)."""

from pathlib import Path

import pytest

from dataplane.testing import expectation_params

pytestmark = pytest.mark.dataplane_scenario("scenario.yaml")


@pytest.mark.parametrize("expectation", expectation_params(Path(__file__).with_name("expectations.yaml")))
def test_expectation(dp, expectation):
    dp.expect(expectation)


def test_ssh_from_the_internet_is_denied_by_the_default_rule(dp):
    dp.assert_denied("tcp 203.0.113.9:50000 > 52.170.10.20:22", rule="DenyAllInBound")


def test_a_web_session_completes_and_the_replies_leave_through_the_public_ip(dp):
    session = dp.connect("tcp 203.0.113.9:50001 > 52.170.10.20:443")
    session.reply().assert_allowed()
    session.close()


def test_an_api_call_survives_a_rule_removal_until_it_is_idle(dp):
    call = dp.connect("tcp 10.20.1.4:40100 > 10.20.2.4:8443")
    dp.remove_rule("nsg-backend", "AllowApiFromWeb")
    call.send().assert_allowed()
    dp.advance_past_idle_timeout()
    call.send().assert_denied(rule="nsg-backend/DenyVnetInbound")
