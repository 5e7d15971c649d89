"""Ethernet headers with explicit MACs: without `dst`, scapy would ask the network by ARP whom to send to."""

from scapy.layers.l2 import Ether

SRC_MAC = "00:0d:3a:00:00:01"
DST_MAC = "00:0d:3a:00:00:02"


def ether(**fields) -> Ether:
    return Ether(src=SRC_MAC, dst=DST_MAC, **fields)
