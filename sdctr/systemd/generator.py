"""The systemd generator of declared containers: each /etc/sdctr/containers/NAME.yaml becomes a
persistent unit ctr-NAME.service, written into the generator's output directory at boot and at
every `systemctl daemon-reload`, and wanted by multi-user.target.

The unit's text is a jinja2 template (templates/container.service.j2) filled with the lines of
the same properties() that the transient path sends over D-Bus, so a declared container and
`sdctr run -d` with the same options get the same hooks and limits. What differs is the first
ExecStartPre: the generator runs where /var may be missing and without a network (quadlet's
habit: it reads only its input files and writes units), so it cannot resolve the image. The unit
runs `sdctr hook declare NAME` instead, which makes (or, after an edit of the file, remakes) the
container's record from the file and the local image, pulling it if the file allows, then
activates its root file system as the transient path's prestart does. The record's id is derived
from the name (declared_id), so the unit's other commands can name it before it exists.

An unreadable file never stops the boot or the other containers: its error goes to the journal
(stderr, which systemd passes on; and sdctr-generator-errors.service, which echoes every
message at boot once journald runs) and into a unit of the same name, not started at boot,
that fails with that message when started by hand (`systemctl status` then says what is wrong).

    sdctr-generator NORMAL_DIR [EARLY_DIR LATE_DIR]      (as systemd runs it; only NORMAL_DIR used)
"""

from __future__ import annotations

import os
import sys

from sdctr import thinhost
from sdctr.log import SdctrError
from sdctr.options import RunOptions, declared_dir, read_declared
from sdctr.spec import ContainerSpec, NetworkMode
from sdctr.systemd.properties import (
    ROOTFS_TEMPLATE,
    Host,
    _quote,
    cgroup_version,
    file_sections,
    properties,
    rootfs_unit,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any

    import jinja2

TEMPLATES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "templates")
CONTAINER_TEMPLATE = "container.service.j2"
WANTS = "multi-user.target.wants"
ERRORS_UNIT = "sdctr-generator-errors.service"
THINPOOL_UNIT = "sdctr-thinpool.service"  # units/: the devicemapper driver's pool, up at boot
DECLARED_DROP_IN = "50-sdctr-declared.conf"  # the rootfs unit's, for a declared thin container
STAMP = "declared.sha256"  # beside the record's config.json (sdctr.runtime.declared writes it)
# where sdctr's command is looked for, in the order a package puts it
COMMAND_DIRS = ("/usr/local/bin", "/usr/bin", "/bin")


def declared_id(name: str) -> str:
    """A declared container's record id: fixed by its name, so that its unit can name it."""
    return _sha256(f"sdctr declared container {name}".encode())


def declared_spec(options: RunOptions) -> ContainerSpec:
    """What the unit needs of the container before its image is known: everything properties()
    reads comes from the options alone."""
    if options.network is NetworkMode.CONTAINER:  # (its record would need NAME's at generation)
        raise SdctrError(f"network: container:{options.network_name} is for `sdctr run` only so far",
                         hint="depends_on: and network: host or a user network instead")
    return ContainerSpec(
        id=declared_id(options.name), name=options.name, image=options.image, image_id="", command=(),
        resources=options.resources,
        restart=options.restart, restart_retries=options.restart_retries, labels=options.labels,
        network=options.network, network_name=options.network_name, ports=options.publish, ip=options.ip,
        remove=options.rm, ephemeral=options.ephemeral, declared=True,
        health_cmd=options.health_cmd or (), health_on_failure=options.health_on_failure,
        # the check's timing as given, else Docker's defaults; an image's HEALTHCHECK is known
        # only at start, where its helper still says READY=1 (NotifyAccess=all is every unit's)
        health_interval=options.health_interval or ContainerSpec.health_interval,
        health_timeout=options.health_timeout or ContainerSpec.health_timeout,
        health_start_period=options.health_start_period,
        health_retries=options.health_retries or ContainerSpec.health_retries)


def storage_of(name: str, source: str, root: str, configured: str | None = None) -> str:
    """The storage driver a declared container's snapshot is on, from files alone (no dmsetup, no
    module loaded: a generator runs early at boot): its record's, while the record is the one
    its file made (its stamp is the file's digest: an edit remakes it on today's driver); else
    `configured` (configured_driver(), which a caller of many computes once). The unit's hook
    makes the record on the driver the unit was made for (sdctr.runtime.declared), so the two
    always agree."""
    record = os.path.join(root, "containers", declared_id(name))
    try:
        with open(os.path.join(record, STAMP)) as f:
            stamp = f.read().strip()
        with open(source, "rb") as f:
            if _sha256(f.read()) == stamp:
                import json

                with open(os.path.join(record, "config.json")) as g:
                    driver = json.load(g).get("storage")
                if isinstance(driver, str) and driver:
                    return driver
    except (OSError, ValueError):  # no record, or /var not mounted yet: the setting decides
        pass
    return configured if configured is not None else configured_driver(root)


def configured_driver(root: str) -> str:
    """The driver a new container gets (sdctr.thinhost.chosen_driver, as `sdctr run` and `info`
    decide it); overlay while sdctr.yaml cannot be read: the unit's hook says what is wrong with
    it when it starts, and the boot goes on."""
    try:
        return thinhost.chosen_driver(root)[0]
    except SdctrError:
        return "overlay"


def _sha256(data: bytes) -> str:
    try:  # hashlib's OpenSSL start-up is ~3 ms of a generator run; the builtin module is enough
        from _sha256 import sha256  # type: ignore[import-not-found]
    except ImportError:
        from hashlib import sha256
    return str(sha256(data).hexdigest())


def file_host() -> Host:
    """The host as a unit file sees it: its cgroup version, and no systemd version (0, as the
    transient path's unit-file mode), as a generator must not ask PID 1 anything."""
    return Host(cgroup_version=cgroup_version(), systemd_version=0)


def sdctr_command(root: str | None = None) -> list[str]:
    """How the unit calls sdctr: its installed command, else this interpreter's module."""
    root = root if root is not None else os.environ.get("SDCTR_ROOT", "")
    args = ["--root", root] if root else []
    for d in COMMAND_DIRS:
        command = os.path.join(d, "sdctr")
        if os.access(command, os.X_OK):
            return [command, *args]
    return [sys.executable, "-m", "sdctr", *args]


class Renderer:
    """The templates, loaded once per run, and what every unit shares. The container's template
    is filled from its precompiled skeleton (sdctr.systemd.skeleton) while that matches the
    template: jinja2 is imported only for a template edited since, and for the error units."""

    def __init__(self, host: Host | None = None, sdctr: Sequence[str] | None = None,
                 root: str = "/var/lib/sdctr") -> None:
        from sdctr.systemd import skeleton

        self._env: jinja2.Environment | None = None
        self._skeleton = skeleton.load(TEMPLATES, CONTAINER_TEMPLATE)
        self.host = host or file_host()
        self.sdctr = list(sdctr) if sdctr is not None else sdctr_command()
        self.root = os.environ.get("SDCTR_ROOT") or root
        self._configured: str | None = None

    def render(self, template: str, /, **values: Any) -> str:
        if template == CONTAINER_TEMPLATE and self._skeleton is not None:
            from sdctr.systemd.skeleton import fill, variant

            signature, variants = self._skeleton
            return fill(variants[variant(signature.flags, values)], values)
        if self._env is None:
            from sdctr.systemd.skeleton import environment

            self._env = environment(TEMPLATES)
        return self._env.get_template(template).render(**values)

    def thin(self, options: RunOptions, source: str) -> bool:
        """Whether the container's snapshot is a thin device (storage_of)."""
        if self._configured is None:  # sdctr.yaml read once a run, not once a container
            self._configured = configured_driver(self.root)
        return storage_of(options.name, source, self.root, self._configured) in thinhost.HOST_DEVICES

    def unit(self, options: RunOptions, source: str, *, thin: bool | None = None) -> str:
        spec = declared_spec(options)
        thin = self.thin(options, source) if thin is None else thin
        if thin:  # made and activated by its rootfs unit, outside the closed device cgroup
            props = properties(spec, self.host, self.sdctr, rootfs_unit=rootfs_unit(spec.id))
        else:
            props = properties(spec, self.host, self.sdctr,
                               prestart=[*self.sdctr, "hook", "declare", options.name])
        unit, service = file_sections(props)
        # depends_on: the other containers' units started first, and this one stopped with them
        unit += [f"{key}=ctr-{other}.service" for other in options.depends_on
                 for key in ("Requires", "After")]
        unit += [f"{key}={value}" for key, value in options.unit_settings]
        service += [f"{key}={value}" for key, value in options.service_settings]
        return self.render(CONTAINER_TEMPLATE, unit=unit, service=service, source=source, root=self.root,
                           publishes=bool(options.publish), unit_name=spec.unit)

    def files(self, options: RunOptions, source: str) -> dict[str, str]:
        """A declared container's unit files by their path in a unit directory: its unit, and for
        a thin one its rootfs unit's drop-in, without which that unit has no record to activate.
        What the generator writes, and `sdctr generate systemd` prints or writes."""
        thin = self.thin(options, source)
        files = {f"ctr-{options.name}.service": self.unit(options, source, thin=thin)}
        if thin:
            files[drop_in_path(options.name)] = self.rootfs_drop_in(options, source)
        return files

    def rootfs_drop_in(self, options: RunOptions, source: str) -> str:
        """A declared thin container's part of its rootfs unit (units/sdctr-rootfs@.service): the
        record made, or remade after an edit of its file, and rootfs.env written before that
        unit's ExecStart activates the snapshot. It runs there, not in the container's unit, as
        the pool's messages need /dev/mapper/control, which the container's device cgroup
        closes; the thin pool first (sdctr-thinpool.service, where sdctr made a pool)."""
        declare = [*self.sdctr, "hook", "declare-rootfs", options.name]
        return (f"# Made by sdctr-generator from {source}: edit that file, then `systemctl daemon-reload`.\n"
                "[Unit]\n"
                f"SourcePath={source}\n"
                f"Wants={THINPOOL_UNIT}\n"
                f"After={THINPOOL_UNIT} network.target\n"
                "\n[Service]\n"
                f"ExecStartPre={' '.join(_quote(a) for a in declare)}\n"
                # an image pulled here (pull: always, or missing) takes longer than an activation
                "TimeoutStartSec=infinity\n")

    def errors_unit(self, messages: Sequence[str]) -> str:
        return self.render("errors.service.j2", messages=[_unit_word(f"{m}") for m in messages])

    def invalid_unit(self, name: str, source: str, message: str) -> str:
        return self.render("invalid.service.j2", name=name, source=source, message=_unit_word(message))


def drop_in_path(name: str) -> str:
    """Where a declared thin container's part of its rootfs unit goes, in a unit directory."""
    return f"{ROOTFS_TEMPLATE}{declared_id(name)}.service.d/{DECLARED_DROP_IN}"


def _unit_word(text: str) -> str:
    """One argument of an Exec line, whatever the text: quoted, and no specifier or variable."""
    text = text.replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%").replace("$", "$$")
    return '"' + " ".join(text.split()) + '"'


def generate(source_dir: str, out_dir: str, renderer: Renderer | None = None) -> list[str]:
    """Every NAME.yaml of `source_dir` as `out_dir`/ctr-NAME.service, wanted at boot; the errors,
    one line each (their units are written too, unwanted, failing with the error when started)."""
    try:
        names = sorted(n for n in os.listdir(source_dir) if n.endswith(".yaml") and not n.startswith("."))
    except FileNotFoundError:
        return []
    except OSError as e:
        return [f"{source_dir}: {e.strerror}"]
    if not names:
        return []
    renderer = renderer or Renderer()
    errors = []
    wants = os.path.join(out_dir, WANTS)
    os.makedirs(wants, exist_ok=True)
    declared: dict[str, RunOptions | str] = {}  # by name: the options, or what is wrong
    sources = {n[:-5]: os.path.join(source_dir, n) for n in names}
    for name, source in sources.items():
        try:
            declared[name] = read_declared(source)
        except SdctrError as e:
            declared[name] = f"{e} ({e.hint})" if e.hint else str(e)
    for name, problem in dependency_errors(declared, sources).items():
        declared[name] = problem
    for name, source in sources.items():
        options = declared[name]
        if isinstance(options, str):
            errors.append(options)
            from sdctr.options import NAME_RE

            if not NAME_RE.fullmatch(name):
                continue  # no unit can carry this name; the journal has the message
            # not wanted at boot: a failed unit would make the boot "degraded" for a typo
            _write(os.path.join(out_dir, f"ctr-{name}.service"), renderer.invalid_unit(name, source, options))
            continue
        _write_files(out_dir, renderer.files(options, source))
        unit = f"ctr-{name}.service"
        link = os.path.join(wants, unit)
        if not os.path.lexists(link):
            os.symlink(os.path.join("..", unit), link)
    if errors:  # said again at boot, in the journal, by a unit that succeeds (no degraded boot)
        _write(os.path.join(out_dir, ERRORS_UNIT), renderer.errors_unit(errors))
        os.symlink(os.path.join("..", ERRORS_UNIT), os.path.join(wants, ERRORS_UNIT))
    return errors


def dependency_errors(declared: dict[str, RunOptions | str], sources: dict[str, str]) -> dict[str, str]:
    """What is wrong with the containers' depends_on, by name: a container that is not declared
    (systemd would fail the start with "unit not found"), or a cycle (systemd would drop one
    of the ordering edges at random, and say so only in the journal)."""
    problems: dict[str, str] = {}
    graph = {n: o.depends_on for n, o in declared.items() if not isinstance(o, str)}
    for name, deps in graph.items():
        for other in deps:
            if other not in declared:
                directory = os.path.dirname(sources[name])
                problems[name] = (f"{sources[name]}: depends_on {other!r}: no such declared container "
                                  f"({directory}/{other}.yaml)")
                break
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(name: str, path: list[str]) -> None:
        state[name] = 1
        for other in graph.get(name, ()):
            if state.get(other) == 1:
                cycle = [*path[path.index(other):], other]
                for i, member in enumerate(cycle[:-1]):  # each member's message starts with it
                    turn = cycle[i:] + cycle[1:i + 1]
                    problems.setdefault(member, f"{sources[member]}: depends_on: a cycle: "
                                                f"{' -> '.join(turn)}")
            elif other in graph and state.get(other) is None:
                visit(other, [*path, other])
        state[name] = 2

    for name in graph:
        if state.get(name) is None:
            visit(name, [name])
    return problems


def _write_files(out_dir: str, files: dict[str, str]) -> None:
    for path, text in files.items():
        if "/" in path:  # a drop-in
            os.makedirs(os.path.join(out_dir, os.path.dirname(path)), exist_ok=True)
        _write(os.path.join(out_dir, path), text)


def _write(path: str, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)


def report(message: str) -> None:
    """On stderr, which systemd passes to the journal (or the kernel's log before journald
    runs), tagged with the generator's name. Never /dev/kmsg ourselves: run by hand or by a
    test, that would write into the machine's own kernel log."""
    print(f"sdctr-generator: {message}", file=sys.stderr, flush=True)


def main(argv: Sequence[str]) -> int:
    if not argv:
        report("usage: sdctr-generator NORMAL_DIR [EARLY_DIR LATE_DIR]")
        return 1
    try:
        errors = generate(declared_dir(), argv[0])
    except Exception as e:  # a bug of ours must not fail the boot either
        errors = [f"internal error: {e.__class__.__name__}: {e}"]
    for message in errors:
        report(message)
    return 0


def entry() -> None:
    sys.exit(main(sys.argv[1:]))
