"""A container's lifecycle over its unit: create, start, stop, remove, describe; the unit's
hooks (ExecStartPre/ExecStopPost); logs from the journal. Orchestrates image/, storage/ and
systemd/; never imports cli/."""
