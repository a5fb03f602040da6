"""Networking: the default bridge network, per-container network namespaces and veth pairs,
addresses (ipam), NAT and published ports (one nftables table, nft; iptables chains where nft is
absent, iptables), the bridges in firewalld's trusted zone (firewalld, over sdctr.systemd.bus),
/etc/hosts and resolv.conf (dns), and the set-up and teardown the unit's hooks run (setup). May
import sdctr's top modules (log, paths, record, spec, config, external, linux) and
sdctr.systemd; nothing upstream of it.
"""
