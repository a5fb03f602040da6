"""What runs inside the container's namespaces: the init (ExecStart), exec's entry, the reaper,
seccomp. The end of the flow: imports only the shared top level (no cli/, image/, net/, runtime/),
and as little of it as a container start can afford."""
