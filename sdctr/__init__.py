"""sdctr: a daemonless container manager for systemd hosts.

Every container is a systemd unit ``ctr-<id>``. The subpackages follow the data flow
cli -> (spec) -> image -> storage -> net -> systemd -> init, with runtime orchestrating and oci
beneath; see README.md's Layout section.
"""

__version__ = "0.1.0"
