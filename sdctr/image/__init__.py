"""Images: the content store, import and archives (load/save/export), the registry client with
its auth, search and pull progress. Imports oci/ and storage/ (to unpack layers), never runtime/,
systemd/, init/ or cli/."""
