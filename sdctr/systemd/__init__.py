"""The only place that talks to systemd: properties (a pure function from a spec to unit
properties, shared by transient units and unit files), manager (jobs over sd-bus), bus (the
binding). Imports nothing but the shared top level."""
