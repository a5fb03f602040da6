"""sdctr: a daemonless container manager for systemd hosts.

Every container is a systemd unit ``ctr-<id>``; see DESIGN.md for the data flow
cli -> spec -> images -> storage -> network -> systemd -> init.
"""

__version__ = "0.1.0"
