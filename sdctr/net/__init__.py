"""Networking: the default bridge network, per-container network namespaces and veth pairs,
addresses (ipam), NAT and published ports (one nftables table, nft), /etc/hosts and resolv.conf
(dns), and the set-up and teardown the unit's hooks run (setup). May import sdctr's top modules
(log, paths, record, spec, config, external, linux); nothing upstream of it.
"""
