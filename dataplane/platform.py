"""Azure's platform exemptions and blocks (reference §9), decided before and after the NSGs.

- 168.63.129.16 ports 80 and 32526 (the VM agent) are never filtered, in either direction.
- DNS to 168.63.129.16:53, IMDS at 169.254.169.254 and KMS (TCP 1688 to Azure's KMS addresses)
  pass unless the NSG rule that decides denies the matching tag (AzurePlatformDNS, -IMDS, -LKM);
  the KMS exemption is off under forced tunnelling (a 0.0.0.0/0 route to on-premises).
- Outbound TCP 25 to Internet is blocked by subscription type, whatever the NSGs say.
- Health probes from 168.63.129.16 are NOT exempt: AllowAzureLoadBalancerInBound lets them in.
"""

from __future__ import annotations

import ipaddress

from .addresses import HOST_IP, IMDS_IP, KMS_IPS
from .flows import TCP, UDP

HOST = int(ipaddress.IPv4Address(HOST_IP))
IMDS = int(ipaddress.IPv4Address(IMDS_IP))
KMS = frozenset(int(ipaddress.IPv4Address(ip)) for ip in KMS_IPS)
PLATFORM_ADDRESSES = frozenset({HOST, IMDS, *KMS})
"""The only remote addresses an exemption can concern: the cheap test that skips the rest."""
AGENT_PORTS = (80, 32526)

ALWAYS = "host-agent"
"""The exemption that no rule can override."""


def exemption(outbound: bool, proto: int, version: int, remote: int, remote_port: int,
              forced_tunneling: bool) -> str | None:
    """The platform exemption for a flow seen at a NIC, as ALWAYS or the tag that can deny it, or None.

    `remote` is the far end: the destination of an outbound packet, the source of an inbound one.
    """
    if version != 4:
        return None
    if remote == HOST:
        if proto in (TCP, UDP) and remote_port in AGENT_PORTS:
            return ALWAYS
        if outbound and proto in (TCP, UDP) and remote_port == 53:
            return "AzurePlatformDNS"
        return None
    if not outbound:
        return None
    if remote == IMDS:
        return "AzurePlatformIMDS"
    if remote in KMS and proto == TCP and remote_port == 1688 and not forced_tunneling:
        return "AzurePlatformLKM"
    return None


def smtp_blocked(outbound: bool, proto: int, dport: int, to_internet: bool, subscription_blocks: bool) -> bool:
    return outbound and proto == TCP and dport == 25 and to_internet and subscription_blocks
