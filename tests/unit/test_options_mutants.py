"""The option parsers' messages, hints and edges, sharpened where tests/mutation found mutants
that nothing noticed. A message is what the user reads, so it is compared whole."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import pytest

from sdctr import options as o
from sdctr.log import SdctrError
from sdctr.spec import Port

BAD = [
    (o.parse_size, "12q", "--x '12q' is not a size", "examples: 512m, 2g, 1048576"),
    (o.parse_memory, "6291455", "--x '6291455' is below the minimum of 6m", None),
    (o.parse_cpu_shares, "1x", "--x '1x' is not a whole number", "the default weight is 1024"),
    (o.parse_cpu_shares, "1", "--x 1 is outside 2..262144", None),
    (o.parse_cpus, "x", "--x 'x' is not a number", "examples: 0.5, 2"),
    (o.parse_cpus, "0.009", "--x '0.009' is outside 0.01..1024", None),
    (o.parse_cpus, "1025", "--x '1025' is outside 0.01..1024", None),
    (o.parse_pids_limit, "x", "--x 'x' is not a whole number", None),
    (o.parse_pids_limit, "0", "--x 0: use a positive number, or -1 for no limit", None),
    (o.parse_pids_limit, "-2", "--x -2: use a positive number, or -1 for no limit", None),
    (o.parse_user, "4294967295:0", "--x '4294967295:0': 4294967295 is not a user or group id (0..4294967294)",
     None),
    (o.parse_restart, "sometimes", "--x 'sometimes' is not a restart policy",
     "one of no, on-failure, always, unless-stopped"),
    (o.parse_network, "over/lay", "--x 'over/lay': no such network",
     "the networks are: bridge, host, none, and `sdctr network ls`'s"),
    (o.parse_publish, "80", "--x '80' is not [IP:]HOSTPORT:CONTAINERPORT[/tcp|udp]",
     "example: -p 8080:80, -p 127.0.0.1:5353:53/udp"),
    (o.parse_publish, "300.1.1.1:80:80", "--x '300.1.1.1' is not an IPv4 address", "example: 10.89.0.10"),
    (o.parse_publish, "0:80", "--x '0:80': port 0 is outside 1..65535", None),
    (o.parse_publish, "80:65536", "--x '80:65536': port 65536 is outside 1..65535", None),
    (o.parse_ip, "256.0.0.1", "--x '256.0.0.1' is not an IPv4 address", "example: 10.89.0.10"),
    (o.parse_ip, "a.b.c.d", "--x 'a.b.c.d' is not an IPv4 address", "example: 10.89.0.10"),
    (o.parse_mount, "/src", "--x '/src' is not SRC:DST[:ro]", "example: /srv/data:/data:ro"),
    (o.parse_mount, ":/data", "--x ':/data' is not SRC:DST[:ro]", "example: /srv/data:/data:ro"),
    (o.parse_mount, "/src:", "--x '/src:' is not SRC:DST[:ro]", "example: /srv/data:/data:ro"),
    (o.parse_mount, "-src:/data",
     "--x '-src:/data': the source must be an absolute host path or a volume name",
     "a volume name: letters, digits, '_', '.', '-'; a letter or digit first"),
    (o.parse_mount, "/src:/", "--x '/src:/': the destination must be an absolute path other than /", None),
    (o.parse_mount, "/s:/d:rx", "--x '/s:/d:rx': mode 'rx' is not ro or rw", None),
    (o.parse_env_entry, "A B=1", "--x 'A B=1' is not KEY=VALUE", None),
    (o.parse_env_entry, "=1", "--x '=1' is not KEY=VALUE", None),
    (o.parse_capability, "nosuch", "--x 'nosuch': unknown capability 'CAP_NOSUCH'",
     "see capabilities(7), e.g. NET_ADMIN"),
    (o.parse_name, "-x", "--x '-x' is not a valid container name",
     "letters, digits, '_', '.', '-'; starting with a letter or digit"),
    (o.parse_name, "a" * 129, f"--x '{'a' * 129}' is not a valid container name",
     "letters, digits, '_', '.', '-'; starting with a letter or digit"),
    (o.parse_pull, "sometimes", "--x 'sometimes' is not a pull policy", "one of missing, always, never"),
]


@pytest.mark.parametrize(("parse", "value", "message", "hint"), BAD)
def test_a_bad_value_is_named_with_a_hint(parse: Callable[[str, str], Any], value: str, message: str,
                                          hint: str | None) -> None:
    with pytest.raises(SdctrError) as e:
        parse("--x", value)
    assert (str(e.value), e.value.hint) == (message, hint)


@pytest.mark.parametrize(("parse", "value", "parsed"), [
    (o.parse_memory, "6m", 6 * 1024**2),
    (o.parse_cpus, "0.01", 0.01), (o.parse_cpus, "1024", 1024.0),
    (o.parse_pids_limit, "-1", -1), (o.parse_pids_limit, "1", 1),
    (o.parse_ip, "255.255.255.255", "255.255.255.255"), (o.parse_ip, "010.001.0.1", "10.1.0.1"),
    (o.parse_name, "a" * 128, "a" * 128),
    (o.parse_publish, "1:65535", Port(1, 65535, "tcp", "")),
    (o.parse_publish, "127.0.0.1:5353:53/udp", Port(5353, 53, "udp", "127.0.0.1")),
    (o.parse_publish, "8080:80/tcp", Port(8080, 80, "tcp", "")),
])
def test_the_edges_are_accepted(parse: Callable[[str, str], Any], value: str, parsed: object) -> None:
    assert parse("--x", value) == parsed


def test_env_errors_name_their_source(tmp_path: Path) -> None:
    with pytest.raises(SdctrError, match=r"^--env 'A B=1' is not KEY=VALUE$"):
        o.parse_env(["A B=1"], {})
    f = tmp_path / "env"
    f.write_text("A B=1\n")
    with pytest.raises(SdctrError, match=rf"^--env-file {f}: 'A B=1' is not KEY=VALUE$"):
        o.read_env_file(str(f), {})


CLI_BAD = [
    ({"image": "i", "rm": True, "restart": "always"},
     "--rm and --restart cannot be combined: a restarting container is never removed", None),
    ({"image": "i", "network": "host", "publish": ["80:80"]},
     "--publish needs a bridge network, not --network host", "add --network bridge"),
    ({"image": "i", "network": "none", "ip": "10.0.0.2"},
     "--ip needs a bridge network, not --network none", "add --network bridge"),
    ({"image": "i", "network": "bridge", "publish": ["80:80", "80:80"]},
     "--publish 80:80/tcp: host port 80/tcp is published twice", None),
    ({"image": "i", "network": "bridge", "publish": ["80:80", "1.2.3.4:80:80"]},
     "--publish 1.2.3.4:80:80/tcp: host port 80/tcp is published twice", None),
    ({"image": "i", "network": "bridge", "publish": ["1.2.3.4:80:80", "80:80"]},
     "--publish: a host port is published on every address and on one of them", None),
    ({}, "no image given", None),
]


@pytest.mark.parametrize(("values", "message", "hint"), CLI_BAD)
def test_whole_record_checks(values: dict[str, Any], message: str, hint: str | None) -> None:
    with pytest.raises(SdctrError) as e:
        o.run_options(values)
    assert (str(e.value), e.value.hint) == (message, hint)


def test_ports_on_distinct_addresses_or_protocols_are_fine() -> None:
    opts = o.run_options({"image": "i", "network": "bridge",
                          "publish": ["1.2.3.4:80:80", "1.2.3.5:80:80", "80:80/udp"]})
    assert len(opts.publish) == 3


BOOL_HINT = 'YAML reads yes/no/on/off as true/false: quote the value, e.g. {}: "no"'
YAML_BAD = [
    ({"ports": True}, "ports takes a list, not true/false", None),
    ({"ports": [True]}, "ports takes a string or a number, not true/false", BOOL_HINT.format("ports")),
    ({"ports": [{"a": 1}]}, "ports takes a string or a number, not a mapping", None),
    ({"ports": [None]}, "ports takes a string or a number, not null", None),
    ({"read_only": "yes"}, "read_only takes true or false, not a string", None),
    ({"read_only": 1.5}, "read_only takes true or false, not a number", None),
    ({"read_only": 1}, "read_only takes true or false, not a number", None),
    ({"read_only": ["x"]}, "read_only takes true or false, not a list", None),
    ({"ports": {"a": 1}}, "ports takes a list, not a mapping", None),
    ({"pull": True}, "pull takes a string or a number, not true/false", BOOL_HINT.format("pull")),
    ({"cpus": 1.5j}, "cpus takes a string or a number, not complex", None),
]


@pytest.mark.parametrize(("values", "message", "hint"), YAML_BAD)
def test_a_yaml_value_of_the_wrong_type(values: dict[str, Any], message: str, hint: str | None) -> None:
    with pytest.raises(SdctrError) as e:
        o.run_options({"image": "i", **values}, yaml=True)
    assert (str(e.value), e.value.hint) == (message, hint)


def test_yaml_keys_and_image() -> None:
    with pytest.raises(SdctrError) as e:
        o.run_options({"image": "i", "bogus": 1}, yaml=True)
    keys = sorted(opt.yaml_key for opt in o.OPTIONS if opt.yaml_key)
    assert (str(e.value), e.value.hint) == ("unknown key 'bogus'", f"the keys are: {', '.join(keys)}")
    with pytest.raises(SdctrError) as e:
        o.run_options({}, yaml=True)
    assert (str(e.value), e.value.hint) == ("no image given", "say which: image: busybox")


def test_yaml_env_mapping_values_as_written() -> None:
    opts = o.run_options({"image": "i", "env": {"A": True, "B": None, "C": "MiXed", "D": 1.5}}, yaml=True)
    assert opts.env == ("A=true", "B", "C=MiXed", "D=1.5")


def test_an_entrypoint_is_one_word_on_the_command_line_and_split_in_yaml() -> None:
    assert o.run_options({"image": "i", "entrypoint": "/bin/sh -c"}).entrypoint == ("/bin/sh -c",)
    declared = o.run_options({"image": "i", "entrypoint": "/bin/sh -c"}, yaml=True)
    assert declared.entrypoint == ("/bin/sh", "-c")
