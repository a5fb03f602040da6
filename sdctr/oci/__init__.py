"""Pure formats: digests, the bounded reader of hostile tar layers. Nothing here knows the store
or a container; it imports only the shared top level (log, record, external)."""
