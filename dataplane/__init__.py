"""dataplane: a packet-level, stateful simulator of Azure Network Security Groups."""
