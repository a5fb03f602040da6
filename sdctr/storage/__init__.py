"""Snapshotters: a writable root file system per container over an image's read-only layers.
A driver describes mounts and commands, the caller acts (containerd's habit); mountinfo is read in
one place. Imports oci/ only: no image store, no unit, no container lifecycle."""
