"""What the user asks of a container, from `run`/`create` flags or a declared container's YAML
keys through one table: the flags a Docker user types, the one-line errors naming the flag (or
the key) that is wrong, and what the image adds at create time."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from helpers import docker

from sdctr import options as opts
from sdctr.cli.parser import build_parser
from sdctr.image.store import Image, ImageConfig
from sdctr.log import SdctrError
from sdctr.main import main
from sdctr.options import OPTIONS, RunOptions, run_options, user_env
from sdctr.runtime.resolve import capabilities, resolve, stat_device
from sdctr.spec import Device, Mount, NetworkMode, RestartPolicy

GLOBAL_DESTS = {"debug", "root", "unit_file_mode", "verb", "handler"}


def flags_of(argv: list[str], verb: str = "run") -> RunOptions:
    return run_options(vars(build_parser(only=verb).parse_args([verb, *argv])))


# --- the table --------------------------------------------------------------------------------

@pytest.mark.parametrize("verb", ["run", "create"])
def test_the_table_covers_every_flag_of_run_and_create(verb: str) -> None:
    parser = build_parser(only=verb)
    sub = next(a for a in parser._actions if a.dest == "verb").choices[verb]  # type: ignore[attr-defined]
    typed = {f for a in sub._actions for f in a.option_strings} - {"--help"}
    in_table = {f for o in OPTIONS if o.verb in ("", verb) for f in o.flags}
    assert typed == in_table
    # and every value the parser leaves is a field the record takes: nothing is parsed aside
    dests = set(vars(parser.parse_args([verb, "img"]))) - GLOBAL_DESTS
    assert {o.dest for o in OPTIONS if o.verb in ("", verb)} <= dests <= {o.dest for o in OPTIONS}
    # restart_retries, on-failure:N's N, comes with --restart's policy; network_name with --network;
    # healthcheck, Compose's mapping, sets the health_* fields
    implied = {"restart_retries", "network_name"}
    assert {o.dest for o in OPTIONS} - {"healthcheck"} | implied == set(RunOptions._fields)


def test_no_flag_means_the_records_defaults() -> None:
    assert flags_of(["busybox"]) == RunOptions(image="busybox")
    assert flags_of(["busybox"], "create") == RunOptions(image="busybox", detach=True)
    assert flags_of(["--name", "", "-w", "", "busybox"]) == RunOptions(image="busybox")  # as Docker


# every YAML key, each away from its default, and the flags that ask the same
DECLARED = """
image: busybox:1.36
command: [sh, -c, echo hi]
entrypoint: /bin/env
cpu_shares: 512
memory: 256m
cpus: 0.5
pids_limit: 100
memory_swap: 1g
cpuset_cpus: 0,1
blkio_weight: 300
ulimits: {nofile: {soft: 1024, hard: 4096}, nproc: 500}
properties: {MemoryHigh: 200M, IPAddressDeny: [any, localhost]}
env: {A: 1, B: }
env_files: [/etc/web.env]
workdir: /srv
user: "1000:1000"
hostname: web
volumes: ["/srv/data:/data:ro"]
mounts: ["type=volume,src=cache,dst=/cache"]
tmpfs: ["/scratch:size=1m"]
read_only: true
cap_add: [net_admin]
cap_drop: CHOWN
restart: on-failure:3
labels: {tier: web, team: }
network: front
network_aliases: [db]
ports: ["127.0.0.1:8080:80", "5353:53/udp"]
publish_all: true
ip: 10.89.0.10
add_hosts: ["db:10.1.2.3", "gw:host-gateway"]
dns: 192.0.2.53
dns_search: [example.test]
dns_options: [ndots:2]
mac_address: "02:AA:bb:cc:dd:ee"
ephemeral: yes
pull: never
sdnotify: container
platform: linux/arm64
devices: ["/dev/loop3:/dev/xvda:r"]
privileged: true
"""
FLAGS = ["-d", "-c", "512", "-m", "256m", "--cpus", "0.5", "--pids-limit", "100",
         "--memory-swap", "1g", "--cpuset-cpus", "0-1", "--blkio-weight", "300",
         "--ulimit", "nofile=1024:4096", "--ulimit", "nproc=500", "--property", "MemoryHigh=200M",
         "--property", "IPAddressDeny=any", "--property", "IPAddressDeny=localhost", "-e", "A=1", "-e", "B",
         "--env-file", "/etc/web.env", "-w", "/srv", "-u", "1000:1000", "-h", "web",
         "-v", "/srv/data:/data:ro", "--mount", "type=volume,src=cache,dst=/cache",
         "--tmpfs", "/scratch:size=1m",
         "--read-only", "--cap-add", "net_admin", "--cap-drop", "CHOWN",
         "--restart", "on-failure:3", "-l", "tier=web", "--label", "team", "--network", "front",
         "--network-alias", "db",
         "-p", "127.0.0.1:8080:80",
         "--publish", "5353:53/udp", "-P", "--ip", "10.89.0.10",
         "--add-host", "db:10.1.2.3", "--add-host", "gw:host-gateway", "--dns", "192.0.2.53",
         "--dns-search", "example.test", "--dns-option", "ndots:2", "--mac-address", "02:aa:bb:cc:dd:ee",
         "--entrypoint", "/bin/env", "--ephemeral",
         "--pull", "never", "--platform", "linux/arm64", "--device", "/dev/loop3:/dev/xvda:r",
         "--privileged", "--sdnotify", "container", "busybox:1.36", "sh", "-c", "echo hi"]


def test_a_declared_container_and_the_same_flags_ask_the_same() -> None:
    declared = yaml.safe_load(DECLARED)
    assert set(declared) == {o.yaml_key for o in OPTIONS if o.yaml_key and o.verb != "declared"}
    from_yaml = run_options(declared, yaml=True)
    assert from_yaml == flags_of(FLAGS)
    default = RunOptions(image="")
    unchanged = [o.yaml_key for o in OPTIONS
                 if o.yaml_key and o.verb != "declared"
                 and getattr(from_yaml, o.dest) == getattr(default, o.dest)]
    # bridge is the default network (as Docker's): that the key is read, another value shows
    assert unchanged == ["network"]
    others = {k: v for k, v in declared.items() if k not in ("ports", "ip", "publish_all", "mac_address",
                                                              "network_aliases")}
    assert run_options({**others, "network": "host"}, yaml=True).network is NetworkMode.HOST
    assert RunOptions(image="").network is NetworkMode.BRIDGE
    assert from_yaml.memory == 256 << 20 and from_yaml.volumes == (Mount("/srv/data", "/data", True),)
    assert from_yaml.cap_add == ("CAP_NET_ADMIN",) and from_yaml.restart is RestartPolicy.ON_FAILURE
    assert from_yaml.restart_retries == 3 and from_yaml.labels == ("tier=web", "team=")


# a bad value for every option that has a parser, and what its error says
BAD = {
    "name": ("x/y", "is not a valid container name"), "cpu_shares": ("1", "is outside 2..262144"),
    "memory": ("10xb", "is not a size"), "cpus": ("lots", "is not a number"),
    "pids_limit": ("0", "use a positive number"), "env": ("=x", "is not KEY=VALUE"),
    "volumes": ("a/b:/data", "absolute host path or a volume name"),
    "mounts": ("type=bind,src=/a,dst=/b,foo=1", "unknown key 'foo'"),
    "tmpfs": ("/t:bogus", "unknown tmpfs option"),
    "cap_add": ("fly", "unknown capability 'CAP_FLY'"),
    "cap_drop": ("CAP_FLY", "unknown capability"), "restart": ("sometimes", "is not a restart policy"),
    "network": ("bo/gus", "no such network"), "pull": ("often", "often"),
    "publish": ("http", "is not [IP:]HOSTPORT:CONTAINERPORT"), "ip": ("10.89.0", "is not an IPv4 address"),
    "user": ("4294967295", "is not a user or group id"), "labels": ("=x", "is not KEY=VALUE"),
    "devices": ("/dev/loop3:rwx", "permissions 'rwx' are not some of r, w, m"),
    "health_cmd": (" ", "is empty"), "health_interval": ("soon", "is not a duration"),
    "health_timeout": ("1s5", "is not a duration"), "health_start_period": ("1x", "is not a duration"),
    "health_retries": ("0", "is not a positive whole number"), "health_on_failure": ("never", "never"),
    "add_hosts": ("db", "is not NAME:ADDRESS"), "dns": ("resolver", "is not an IP address"),
    "dns_search": ("a b", "is not a domain name"), "dns_options": ("ndots 2", "is not one resolver option"),
    "mac_address": ("02:aa:bb", "is not a MAC address"), "sdnotify": ("healthy", "healthy"),
    "network_aliases": ("a b", "is not a host name"),
    "memory_swap": ("lots", "is not a size"), "cpuset_cpus": ("0-x", "is not a number or a range"),
    "blkio_weight": ("5", "is not a weight in 10..1000"), "ulimits": ("nofiles=1", "is not a limit's name"),
    "properties": ("MemoryHihg=1G", "is not a property sdctr passes on"),
}


def test_every_parser_has_a_bad_value_here() -> None:
    # the declared-only keys' bad values: test_declared_deps
    assert set(BAD) == {o.dest for o in OPTIONS if o.parse and o.verb != "declared"}


@pytest.mark.parametrize("dest", sorted(BAD))
def test_a_bad_flag_is_one_line_naming_it_and_status_125(dest: str, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    option = next(o for o in OPTIONS if o.dest == dest)
    value, message = BAD[dest]
    assert main(["--root", str(tmp_path), "run", option.flags[-1], value, "busybox"]) == 125
    err = capsys.readouterr().err
    assert err.startswith("sdctr: error: ") and option.flag in err.splitlines()[0]
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "containers").exists()  # stopped before anything was made


@pytest.mark.parametrize("dest", sorted(d for d in BAD if next(o for o in OPTIONS if o.dest == d).yaml_key))
def test_a_bad_key_names_the_key_not_the_flag(dest: str) -> None:
    option = next(o for o in OPTIONS if o.dest == dest)
    value, message = BAD[dest]
    with pytest.raises(SdctrError) as e:
        run_options({"image": "busybox", option.yaml_key: [value] if option.kind == opts.LIST else value},
                    yaml=True)
    assert str(e.value).startswith(f"{option.yaml_key} ") and message in str(e.value)
    assert "--" not in str(e.value)
    assert e.value.status == 125


@pytest.mark.parametrize(("declared", "message"), [
    ({"memroy": "1g"}, "unknown key 'memroy'"),
    ({"memory": ["1g"]}, "memory takes a string or a number, not a list"),
    ({"read_only": "yes please"}, "read_only takes true or false, not a string"),
    ({"volumes": {"/a": "/b"}}, "volumes takes a list, not a mapping"),
    ({"restart": False}, "restart takes a string or a number, not true/false"),  # `restart: no`
    ({"env": [None]}, "env takes a string or a number, not null"),
])
def test_a_declared_containers_wrong_types_name_the_key(declared: dict[str, object], message: str) -> None:
    with pytest.raises(SdctrError) as e:
        run_options({"image": "busybox", **declared}, yaml=True)
    assert str(e.value) == message
    if declared == {"restart": False}:
        assert e.value.hint and 'restart: "no"' in e.value.hint
    with pytest.raises(SdctrError, match="no image given"):
        run_options({}, yaml=True)


def test_rm_and_restart_cannot_be_combined() -> None:
    with pytest.raises(SdctrError, match="--rm and --restart cannot be combined"):
        flags_of(["--rm", "--restart", "always", "busybox"])
    assert flags_of(["--rm", "--restart", "no", "busybox"]).rm


# --- the parsers --------------------------------------------------------------------------------

@pytest.mark.parametrize(("value", "expected"), [
    ("64m", 64 * 1024**2), ("1g", 1024**3), ("512k", 512 * 1024), ("1048576", 1048576),
    ("1.5g", int(1.5 * 1024**3)), ("256MB", 256 * 1024**2), ("100b", 100),
])
def test_sizes(value: str, expected: int) -> None:
    assert opts.parse_size("--memory", value) == expected


@pytest.mark.parametrize("value", ["10xb", "", "m", "-5m", "1..2g", "ten"])
def test_bad_sizes_name_the_flag_and_show_examples(value: str) -> None:
    with pytest.raises(SdctrError) as e:
        opts.parse_memory("--memory", value)
    assert f"--memory {value!r} is not a size" in str(e.value)
    assert e.value.hint and "512m" in e.value.hint
    assert e.value.status == 125


def test_memory_has_dockers_minimum() -> None:
    with pytest.raises(SdctrError, match="minimum of 6m"):
        opts.parse_memory("--memory", "1m")


@pytest.mark.parametrize(("value", "ok"), [("512", True), ("2", True), ("262144", True),
                                          ("1", False), ("262145", False), ("abc", False), ("-3", False)])
def test_cpu_shares_range(value: str, ok: bool) -> None:
    if ok:
        assert opts.parse_cpu_shares("--cpu-shares", value) == int(value)
    else:
        with pytest.raises(SdctrError, match="--cpu-shares"):
            opts.parse_cpu_shares("--cpu-shares", value)


def test_restart_policies() -> None:
    assert opts.parse_restart("--restart", "on-failure:3") == (RestartPolicy.ON_FAILURE, 3)
    assert opts.parse_restart("--restart", "always") == (RestartPolicy.ALWAYS, 0)
    assert opts.run_options({"image": "b", "restart": "on-failure:2"}, yaml=True).restart_retries == 2
    for bad, message in (("always:3", "for on-failure only"), ("on-failure:x", "not a whole number"),
                         ("on-failure:-1", "not a whole number")):
        with pytest.raises(SdctrError, match=message):
            opts.parse_restart("--restart", bad)
    with pytest.raises(SdctrError, match="not a restart policy") as e:
        opts.parse_restart("--restart", "sometimes")
    assert e.value.hint == "one of no, on-failure, always, unless-stopped"


@pytest.mark.parametrize(("value", "expected"), [
    ("/srv:/data", Mount("/srv", "/data", False)), ("/srv:/data:ro", Mount("/srv", "/data", True)),
    ("data:/data", Mount("data", "/data", kind="volume")), ("/srv:/data:ro,Z", Mount("/srv", "/data", True)),
])
def test_volumes(value: str, expected: Mount) -> None:
    assert opts.parse_mount("--volume", value) == expected


@pytest.mark.parametrize(("value", "message"), [
    ("/srv", "is not SRC:DST"), ("-named:/data", "absolute host path or a volume name"),
    ("a/b:/data", "volume name"), ("/srv:/", "other than /"),
    ("/srv:data", "absolute path"), ("/srv:/data:rx", "not ro or rw"),
])
def test_bad_volumes(value: str, message: str) -> None:
    with pytest.raises(SdctrError, match=message):
        opts.parse_mount("--volume", value)


def test_env_pass_through() -> None:
    assert opts.parse_env(["A=1", "HOME", "MISSING"], {"HOME": "/root"}) == ["A=1", "HOME=/root"]
    with pytest.raises(SdctrError, match="not KEY=VALUE"):
        opts.parse_env(["=x"], {})


def test_env_file(tmp_path: Path) -> None:
    f = tmp_path / "env"
    f.write_text("# comment\nA=1\n\nB=two words\n")
    assert opts.read_env_file(str(f), {}) == ["A=1", "B=two words"]
    with pytest.raises(SdctrError, match=r"--env-file .*No such file"):
        opts.read_env_file(str(tmp_path / "nope"), {})


def test_the_users_environment_is_files_then_flags(tmp_path: Path) -> None:
    f = tmp_path / "env"
    f.write_text("A=file\nB=file\nHOME\n")
    options = flags_of(["--env-file", str(f), "-e", "B=flag", "-e", "USER", "-e", "NOBODY", "busybox"])
    assert user_env(options, {"HOME": "/root", "USER": "me"}) == ("A=file", "B=file", "HOME=/root",
                                                                  "B=flag", "USER=me")


def test_capabilities() -> None:
    assert set(capabilities([], [])) == set(docker.DEFAULT_CAPS)
    o = flags_of(["--cap-add", "net_admin", "--cap-drop", "CAP_CHOWN", "--cap-drop", "mknod", "busybox"])
    added = capabilities(o.cap_add, o.cap_drop)
    assert "CAP_NET_ADMIN" in added and "CAP_CHOWN" not in added and "CAP_MKNOD" not in added
    assert capabilities([], ["ALL"]) == ()
    assert capabilities(["CAP_SYS_TIME"], ["ALL"]) == ("CAP_SYS_TIME",)  # Docker's idiom
    assert "CAP_CHOWN" in capabilities(["CAP_CHOWN"], ["CAP_CHOWN"])  # drops first, then adds
    assert "CAP_KILL" not in capabilities(["ALL"], ["CAP_KILL"])
    assert "CAP_SYS_ADMIN" in capabilities(flags_of(["--cap-add", "all", "busybox"]).cap_add, [])


@pytest.mark.parametrize("name", ["web", "web-1", "a.b_c"])
def test_good_names(name: str) -> None:
    assert opts.parse_name("--name", name) == name


@pytest.mark.parametrize("name", ["-web", "we b", "x/y", ""])
def test_bad_names(name: str) -> None:
    with pytest.raises(SdctrError, match="not a valid container name"):
        opts.parse_name("--name", name)


# --- resolved against the image -------------------------------------------------------------------

IMAGE = Image(id="c" * 64, repo_tags=("busybox:latest",), manifest_digest="", layers=(), layer_blobs=(),
              config=ImageConfig(env=("PATH=/bin", "A=image"), cmd=("sh",), entrypoint=("/init",),
                                 workdir="/home", user="nobody"),
              created="", size=0)


@pytest.mark.parametrize(("flags", "args", "command"), [
    ([], [], ("/init", "sh")),  # the image's entrypoint and Cmd
    ([], ["ls", "-l"], ("/init", "ls", "-l")),  # arguments replace the Cmd
    (["--entrypoint", "/bin/env"], [], ("/bin/env",)),  # an entrypoint drops the Cmd, as Docker
    (["--entrypoint", ""], ["ls"], ("ls",)),  # '' clears the image's
])
def test_the_command_is_the_entrypoint_then_the_arguments(flags: list[str], args: list[str],
                                                          command: tuple[str, ...]) -> None:
    assert resolve(flags_of([*flags, "busybox", *args]), IMAGE).command == command


def test_no_command_at_all_is_an_error_that_says_how() -> None:
    with pytest.raises(SdctrError, match="no command specified for busybox") as e:
        resolve(flags_of(["--entrypoint", "", "busybox"]), IMAGE)
    assert e.value.hint == "give one: sdctr run busybox sh"


def test_what_the_user_asked_wins_over_the_image() -> None:
    spec = resolve(flags_of(["-m", "64m", "-w", "/srv", "--restart", "always", "--network", "host", "-t",
                             "--name", "web", "busybox"]), IMAGE, user_env=("A=user", "B=2"))
    assert spec.env == ("PATH=/bin", "A=user", "B=2")
    assert (spec.workdir, spec.user, spec.name, spec.image, spec.image_id) == (
        "/srv", "nobody", "web", "busybox:latest", IMAGE.id)
    assert spec.resources.memory == 64 << 20 and spec.restart is RestartPolicy.ALWAYS
    assert spec.network is NetworkMode.HOST and spec.tty and spec.attached and len(spec.id) == 64
    default = resolve(RunOptions(image="busybox"), IMAGE)
    assert (default.workdir, default.attached) == ("/home", True)
    assert set(default.capabilities) == set(docker.DEFAULT_CAPS)


@pytest.mark.parametrize(("value", "device"), [
    ("/dev/loop3", Device("/dev/loop3", "/dev/loop3", "rwm")),
    ("/dev/loop3:r", Device("/dev/loop3", "/dev/loop3", "r")),
    ("/dev/sdb:/dev/xvdb", Device("/dev/sdb", "/dev/xvdb", "rwm")),
    ("/dev/sdb:/dev/disk/xvdb:mwr", Device("/dev/sdb", "/dev/disk/xvdb", "rwm")),
])
def test_device_takes_dockers_forms(value: str, device: Device) -> None:
    assert opts.parse_device("--device", value) == device


@pytest.mark.parametrize(("value", "message"), [
    ("/dev/loop3:rr", "are not some of r, w, m"), ("/dev/loop3:/dev/x:q", "are not some of r, w, m"),
    ("loop3", "not an absolute host path"), ("/dev/a:/dev/b:r:w", "is not HOST[:CONTAINER][:PERMS]"),
    ("/dev/sdb:/data/sdb", "under /dev"), ("/dev/sdb:dev/sdb", "under /dev"),
    ("/dev/sdb:/dev/../etc/x", "under /dev"), ("/dev/sdb:/dev/pts/0", "under /dev"),
])
def test_a_bad_device_says_why(value: str, message: str) -> None:
    with pytest.raises(SdctrError, match=re.escape(message)):
        opts.parse_device("--device", value)


def test_a_device_is_stated_at_create() -> None:
    null = stat_device(Device("/dev/null", "/dev/mynull", "r"))
    assert (null.kind, null.major, null.minor, null.path, null.perms) == ("c", 1, 3, "/dev/mynull", "r")
    assert null.mode == 0o666
    outside = stat_device(Device("/dev/null", "/dev/null")).replace(host_path="/srv/null", path="/srv/null")
    with pytest.raises(SdctrError, match="under /dev"):  # checked here when CONTAINER is HOST's
        opts.check_device_path("--device", outside)
    for path, message in (("/etc/passwd", "not a device node"), ("/dev/no-such", "No such file")):
        with pytest.raises(SdctrError, match=message) as e:
            stat_device(Device(path, path))
        assert str(e.value).startswith(f"--device {path}: ")
