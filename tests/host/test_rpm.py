"""The RPM as an administrator gets it: packaging/rpm/build makes the source and binary RPMs on
this Debian machine (rpmbuild, Fedora's macros from macros.debian), rpmlint finds nothing that is
not explained in sdctr.rpmlintrc, and the binary RPM holds what the README says it installs,
with the modes, config flags and scriptlets the spec promises."""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import REPO, checkout_version, skip_or_fail
from helpers.el_setuptools import EL_SETUPTOOLS, el_venv

from sdctr import config, options
from sdctr.cli.parser import build_parser

pytestmark = pytest.mark.host

RPM_DIR = REPO / "packaging/rpm"
SITELIB = "/usr/lib/python3/dist-packages"  # macros.debian's %python3_sitelib


class Rpms:
    def __init__(self, out: Path):
        version = checkout_version()
        # Debian's rpm opens (and makes) its database at ~/.rpmdb even to query a file: a home of
        # the test's own, so the machine's /root is never touched
        self.env = {**os.environ, "HOME": str(out)}
        self.binary = out / f"sdctr-{version}-1.noarch.rpm"
        self.source = out / f"sdctr-{version}-1.src.rpm"

    def query(self, *args: str, rpm: Path | None = None) -> str:
        return subprocess.run(["rpm", "-qp", *args, str(rpm or self.binary)], check=True,
                              capture_output=True, text=True, env=self.env).stdout


@pytest.fixture(scope="module")
def rpms(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rpms]:
    if not shutil.which("rpmbuild"):
        skip_or_fail("rpmbuild is missing (Debian's rpm package): run tests/setup")
    out = tmp_path_factory.mktemp("rpms")
    r = subprocess.run([str(RPM_DIR / "build"), str(out)], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, f"packaging/rpm/build failed:\n{r.stderr}"
    rpms = Rpms(out)
    assert rpms.binary.is_file() and rpms.source.is_file(), sorted(p.name for p in out.iterdir())
    yield rpms


@pytest.mark.parametrize("setuptools", sorted(EL_SETUPTOOLS))
def test_rhels_setuptools_build_the_same_rpm(rpms: Rpms, setuptools: str, tmp_path: Path) -> None:
    """The spec's %pyproject_wheel with the setuptools RHEL 9 and RHEL 8 build it with (53.0.0,
    50.3.2: they read setup.cfg, not pyproject.toml's [project]) makes the RPM today's makes."""
    python = el_venv(setuptools, tmp_path, pip=True)
    out = tmp_path / "rpms"
    r = subprocess.run([str(RPM_DIR / "build"), str(out)], capture_output=True, text=True, timeout=600,
                       env={**os.environ, "SDCTR_BUILD_PYTHON": python})
    assert r.returncode == 0, f"packaging/rpm/build with setuptools {setuptools} failed:\n{r.stderr}"
    el = Rpms(out)
    for query in ("-l", "--requires", "--provides"):
        assert el.query(query) == rpms.query(query), f"rpm -qp {query} differs"


def test_rpmlint_finds_nothing_unexplained(rpms: Rpms) -> None:
    rpmlint = Path(sys.executable).with_name("rpmlint")
    if not rpmlint.exists():
        skip_or_fail("rpmlint is missing: pip install -e '.[test]'")
    r = subprocess.run([str(rpmlint), "-c", str(RPM_DIR / "rpmlint.toml"),
                        "-r", str(RPM_DIR / "sdctr.rpmlintrc"), str(RPM_DIR / "sdctr.spec"),
                        str(rpms.binary), str(rpms.source)], capture_output=True, text=True, timeout=300,
                       env=rpms.env)
    summary = r.stdout.strip().splitlines()[-1]
    assert "2 packages and 1 specfiles checked; 0 errors, 0 warnings" in summary, r.stdout
    assert r.returncode == 0, r.stdout


@pytest.fixture(scope="module")
def payload(rpms: Rpms, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The binary RPM's files, unpacked (rpm2archive: the payload as a tar; Debian has no cpio)."""
    root = tmp_path_factory.mktemp("payload")
    with rpms.binary.open("rb") as rpm:
        tar = subprocess.run(["rpm2archive", "-"], stdin=rpm, check=True, capture_output=True,
                             env=rpms.env).stdout
    subprocess.run(["tar", "-xz"], input=tar, cwd=root, check=True)
    return root


def parser_verbs(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """The parser's own verbs by their first name (an alias names the same parser)."""
    found: dict[str, argparse.ArgumentParser] = {}
    for name, sub in (parser._subparsers._group_actions[0].choices if parser._subparsers else {}).items():
        if all(sub is not seen for seen in found.values()):
            found[name] = sub
    return found


def readme_file_list() -> list[str]:
    text = (REPO / "README.md").read_text()
    m = re.search(r"<!-- rpm-files -->\n```\n(.*?)```", text, re.S)
    assert m, "README.md has no <!-- rpm-files --> block"
    return m.group(1).split("\n")[:-1]


def test_the_rpm_installs_what_the_readme_says(rpms: Rpms) -> None:
    files = set(rpms.query("-l").split())
    python = {f for f in files if f == SITELIB or f.startswith(SITELIB + "/")}
    listed = readme_file_list()
    assert sum(line.startswith("/usr/lib/python3") for line in listed) == 1
    # sdctr-VERB.1.gz: one page for each verb the parser has today
    verbs = parser_verbs(build_parser())
    listed = [line.replace("VERB", verb) for line in listed for verb in (verbs if "VERB" in line else [""])]
    others = {line.rstrip("/") for line in listed if not line.startswith("/usr/lib/python3")}
    # the directories the listed files sit in are the package's too (/etc/sdctr, /usr/share/doc/sdctr)
    parents = {str(p) for f in others for p in Path(f).parents} - {"/"}
    assert files - python - parents == others, "README's list and `rpm -qlp` differ"
    # the Python package is the source tree's, the unit's shell scripts and templates included,
    # each module with its byte code (rpm owns it: python never writes a file rpm -e leaves)
    source = {str(p.relative_to(REPO)) for p in (REPO / "sdctr").rglob("*")
              if p.is_file() and "__pycache__" not in p.parts}
    packaged = {f[len(SITELIB) + 1:] for f in python if "__pycache__" not in f}
    packaged_files = {f for f in packaged if (REPO / f).is_file() or not f.startswith("sdctr/")}
    assert source == {f for f in packaged_files if f.startswith("sdctr/")}
    assert f"sdctr-{checkout_version()}.dist-info/METADATA" in packaged
    pyc = {f for f in python if f.endswith(".pyc")}
    assert len(pyc) == len({f for f in source if f.endswith(".py")}), "every module's byte code"


def test_modes_config_files_and_scriptlets(rpms: Rpms) -> None:
    lines = rpms.query("--qf", "[%{FILEMODES:perms} %{FILEFLAGS:fflags} %{FILENAMES}\n]").splitlines()
    entries = {line.split()[-1]: tuple(line.split()[:-1]) for line in lines}
    assert entries["/var/lib/sdctr"][0] == "drwx------"
    assert entries["/run/sdctr"] == ("drwx------", "g")  # %ghost: made by tmpfiles, not unpacked
    assert entries["/etc/sdctr/sdctr.yaml"][1] == "cn"  # %config(noreplace)
    assert entries["/usr/lib/systemd/system-generators/sdctr-generator"][0] == "-rwxr-xr-x"
    scripts = rpms.query("--scripts")
    for verb in ("preset", "disable --now", "try-restart"):
        named = re.findall(rf"systemctl [^\n]*{verb} ([^>]*)>", scripts)
        assert named, f"no systemctl {verb} in the scriptlets:\n{scripts}"
        units = set(" ".join(named).split())
        # boot-time units only: containers' units are never the package's
        assert units <= {"sdctr-setup.service", "sdctr-restart.service", "sdctr-gc.timer"}, units
    requires = set(rpms.query("--requires").split("\n"))
    for name in ("python3-pyyaml", "python3-jinja2", "python3-httpx", "systemd", "util-linux",
                 "iproute", "nftables", "tar"):
        assert name in requires, requires


def test_the_shipped_configuration_names_every_key_commented_out(rpms: Rpms, tmp_path: Path) -> None:
    with rpms.binary.open("rb") as rpm:  # rpm2archive: the payload as a tar (Debian has no cpio)
        payload = subprocess.run(["rpm2archive", "-"], stdin=rpm, check=True, capture_output=True,
                                 env=rpms.env).stdout
    subprocess.run(["tar", "-xz", "./etc/sdctr/sdctr.yaml"], input=payload, cwd=tmp_path, check=True)
    text = (tmp_path / "etc/sdctr/sdctr.yaml").read_text()
    import yaml

    assert yaml.safe_load(text) is None, "every key is commented out: the defaults hold"
    # the keys uncommented ("#network:", "#  subnet: ..."), not the prose ("# out: ...", "#  # ...")
    uncommented = re.sub(r"(?m)^#((?:  )*[A-Za-z_][\w.-]*:)", r"\1", text)
    parsed = config.parse(yaml.safe_load(uncommented), source="sdctr.yaml")
    # every setting config.py reads is there, with its default (mirrors: an example)
    for section in config.Config._fields:
        for key in getattr(config.Config(), section)._fields:
            assert re.search(rf"(?m)^#\s+{key}:", text), f"{section}.{key} is not in sdctr.yaml"
    assert parsed.network == config.NetworkSettings(gateway="10.89.0.1")


def man(page: Path) -> str:
    """The page as `man` shows it on an 80-column terminal; any warning of groff's fails."""
    r = subprocess.run(["man", "--warnings", "-l", str(page)], capture_output=True, text=True,
                       env={**os.environ, "MANWIDTH": "80", "PAGER": "cat"})
    assert r.returncode == 0 and r.stderr == "", f"man -l {page.name}:\n{r.stderr}"
    return re.sub(".\b", "", r.stdout)  # grotty's bold and underline, as overstrikes


def test_every_verb_has_a_man_page_that_renders_without_warnings(payload: Path) -> None:
    if not shutil.which("man"):
        skip_or_fail("man is missing (man-db): run tests/setup")
    man1 = payload / "usr/share/man/man1"
    verbs = parser_verbs(build_parser())
    assert {p.name for p in man1.iterdir()} == {"sdctr.1.gz"} | {f"sdctr-{v}.1.gz" for v in verbs}
    text = man(man1 / "sdctr.1.gz")
    see_also = text.split("SEE ALSO", 1)[1]
    for verb, sub in verbs.items():
        assert f"sdctr-{verb}(1)" in see_also, f"sdctr(1) does not point to sdctr-{verb}(1)"
        page = man(man1 / f"sdctr-{verb}.1.gz")
        assert re.search(rf"^NAME\n\s+sdctr-{re.escape(verb)}\s+-\s+\S", page, re.M), page[:300]
        # every option the verb takes is on its page (a group's page: its verbs' options too)
        flags = {f for p in (sub, *parser_verbs(sub).values()) for a in p._actions
                 if a.help != argparse.SUPPRESS for f in a.option_strings}
        missing = {f for f in flags if not re.search(rf"(?<![\w-]){re.escape(f)}(?![\w-])", page)}
        assert not missing, f"sdctr-{verb}(1) lacks {sorted(missing)}"
    for page in (payload / "usr/share/man/man5").iterdir():
        man(page)


def test_the_file_format_pages_name_every_key(payload: Path) -> None:
    if not shutil.which("man"):
        skip_or_fail("man is missing (man-db): run tests/setup")
    man5 = payload / "usr/share/man/man5"
    settings = man(man5 / "sdctr.yaml.5.gz")
    for section in config.Config._fields:
        assert re.search(rf"^   {section}$", settings, re.M), f"sdctr.yaml(5) lacks {section}"
        for key in getattr(config.Config(), section)._fields:
            assert re.search(rf"^       {key}\b", settings, re.M), f"sdctr.yaml(5) lacks {section}.{key}"
    declared = man(man5 / "sdctr-containers.5.gz")
    for option in options.OPTIONS:
        if option.yaml_key:
            # a run flag's key names its flag; a declared container's own key says so
            title = r"\(sdctr run" if option.flags else r"\(a declared container's own key\)"
            assert re.search(rf"^       {option.yaml_key} {title}", declared, re.M), option.yaml_key


def bash_complete(payload: Path, line: str) -> set[str]:
    """What bash offers at the end of `line` (COMP_WORDS as bash splits it), with the RPM's file."""
    words = line.split(" ")
    script = (f"source {payload}/usr/share/bash-completion/completions/sdctr; "
              f"COMP_WORDS=({' '.join(repr(w) for w in words)}); COMP_CWORD={len(words) - 1}; "
              "_sdctr; printf '%s\\n' \"${COMPREPLY[@]}\"")
    r = subprocess.run(["bash", "--norc", "-c", script], capture_output=True, text=True, check=True)
    assert r.stderr == "", r.stderr
    return set(r.stdout.split())


def zsh_complete(payload: Path, line: str) -> set[str]:
    """What the RPM's zsh function offers at the end of `line`: loaded as a user's .zshrc would
    (compinit, then the file sourced), then run with _describe and _files replaced by stubs that
    print the candidates (a completion widget needs a terminal)."""
    words = line.split(" ")
    script = ("autoload -U compinit && compinit -u -D && "
              f"source {payload}/usr/share/zsh/site-functions/_sdctr && "
              "[[ ${_comps[sdctr]} == _sdctr ]] || { echo 'compdef did not register _sdctr' >&2; exit 1; }\n"
              "_describe() { local -a c; c=(\"${(@P)4}\"); print -l -- ${c%%:*} }\n"
              "_files() { print -- '<files>' }\n"
              f"words=({' '.join(repr(w) for w in words)}); CURRENT={len(words)}; _sdctr")
    r = subprocess.run(["zsh", "-f", "-c", script], capture_output=True, text=True,
                       env={**os.environ, "HOME": str(payload)})
    assert r.returncode == 0 and r.stderr == "", r.stderr
    return {w.replace("\\:", ":") for w in r.stdout.split()}


@pytest.mark.parametrize("shell", ["bash", "zsh"])
def test_completion_offers_the_parsers_verbs_and_flags(payload: Path, shell: str) -> None:
    if not shutil.which(shell):
        skip_or_fail(f"{shell} is missing: run tests/setup")
    complete = bash_complete if shell == "bash" else zsh_complete
    parser = build_parser()
    verbs = parser_verbs(parser)
    top = complete(payload, "sdctr ")
    assert set(verbs) <= top, set(verbs) - top
    for verb, sub in verbs.items():
        if sub._subparsers:  # a group: its verbs, aliases included, after it (and after an option)
            names = set(sub._subparsers._group_actions[0].choices)
            assert complete(payload, f"sdctr {verb} ") >= names, verb
            assert complete(payload, f"sdctr --debug {verb} ") >= names, verb
    run_flags = {f for a in verbs["run"]._actions for f in a.option_strings}
    assert complete(payload, "sdctr run --me") >= {"--memory"}
    assert complete(payload, "sdctr run -") >= run_flags
    assert "--unit-file-mode" not in complete(payload, "sdctr --"), "a hidden option is offered"
    # after the verbs, an argument (an image, a file): nothing the parser knows
    assert not {"run", "ps"} & complete(payload, "sdctr run busybox ")


class Root:
    """The binary RPM installed with Debian's rpm into a directory of the test's own (--root, files
    only: the scriptlets run in a test host, tests/testhost/test_rpm_install.py), to see what
    `rpm -e` removes by RPM's rules alone: there /var/lib/sdctr is a bind mount rpm cannot remove,
    here it is a plain directory."""

    def __init__(self, rpms: Rpms, path: Path):
        self.rpms, self.path = rpms, path
        self.rpm("--initdb")
        self.rpm("-i", "--nodeps", "--noscripts", str(rpms.binary))

    def rpm(self, *args: str) -> None:
        # the database under the root too (Debian's rpm makes --dbpath inside --root)
        subprocess.run(["rpm", "--root", str(self.path), "--dbpath", "/rpmdb", *args], check=True,
                       capture_output=True, env=self.rpms.env)

    def left(self) -> set[str]:
        """Every path under the root but rpm's database."""
        return {"/" + str(p.relative_to(self.path)) for p in self.path.rglob("*")
                if not p.is_relative_to(self.path / "rpmdb")}


def test_rpm_e_keeps_the_state_a_changed_configuration_and_declared_containers(rpms: Rpms,
                                                                              tmp_path: Path) -> None:
    root = Root(rpms, tmp_path / "root")
    state = root.path / "var/lib/sdctr/containers/0123abcd/config.json"
    state.parent.mkdir(parents=True)
    state.write_text("{}")
    config_file = root.path / "etc/sdctr/sdctr.yaml"
    changed = config_file.read_text() + "network:\n  bridge: sdctr9\n"
    config_file.write_text(changed)
    declared = root.path / "etc/sdctr/containers/web.yaml"
    declared.write_text("image: busybox\n")

    root.rpm("-e", "--nodeps", "--noscripts", "sdctr")

    assert state.read_text() == "{}", "rpm -e removed /var/lib/sdctr's contents"
    assert (root.path / "etc/sdctr/sdctr.yaml.rpmsave").read_text() == changed
    assert declared.exists()
    kept = {"/var/lib/sdctr", "/etc/sdctr", "/etc/sdctr/containers"}  # they hold what is kept
    assert root.left() & set(rpms.query("-l").split()) == kept, "rpm -e left files the package owned"
    assert {p for p in root.left() if "sdctr" in p} == kept | {
        "/var/lib/sdctr/containers", "/var/lib/sdctr/containers/0123abcd", str(state)[len(str(root.path)):],
        "/etc/sdctr/sdctr.yaml.rpmsave", "/etc/sdctr/containers/web.yaml"}


def test_rhel8s_python39_build_names_its_packages(tmp_path: Path) -> None:
    """RHEL 8 builds the spec for python39 (rpmbuild --define 'python3_pkgversion 39'; python39-devel
    makes %__python3 /usr/bin/python3.9): every Python dependency is python39's, and the generator
    runs python3.9 (the spec as rpmbuild would run it, read with rpmspec: no build needed)."""
    if not shutil.which("rpmspec"):
        skip_or_fail("rpmspec is missing (Debian's rpm package): run tests/setup")
    el8 = ["--load", str(RPM_DIR / "macros.debian"), "--define", "python3_pkgversion 39",
           "--define", "__python3 /usr/bin/python3.9", str(RPM_DIR / "sdctr.spec")]
    env = {**os.environ, "HOME": str(tmp_path)}

    def rpmspec(*args: str) -> str:
        return subprocess.run(["rpmspec", *args, *el8], check=True, capture_output=True, text=True,
                              env=env).stdout

    requires = set(rpmspec("-q", "--requires").split("\n")) - {""}
    python = {r for r in requires if r.startswith("python")}
    assert python == {"python39 >= 3.9", "python39-pyyaml", "python39-jinja2", "python39-httpx"}, requires
    build_requires = set(rpmspec("-q", "--srpm", "--requires").split("\n"))
    assert "python39-devel" in build_requires, build_requires
    assert "sed -i '1s|^#!.*|#!/usr/bin/python3.9|' " in rpmspec("-P"), "the generator's interpreter"


def test_the_readme_says_where_each_dependency_comes_from(rpms: Rpms) -> None:
    """Every package the RPM requires or recommends is named in the README under the one EL9
    repository it comes from (BaseOS, AppStream or EPEL)."""
    text = (REPO / "README.md").read_text()
    m = re.search(r"^Where the dependencies come from.*?\n(.*?)\n\n", text, re.S | re.M)
    assert m, "README.md does not say where the dependencies come from"
    parts = re.split(r"\b(BaseOS|AppStream|EPEL):", m.group(1))
    repos: dict[str, set[str]] = {}
    for repo, body in zip(parts[1::2], parts[2::2]):
        repos.setdefault(repo, set()).update(re.findall(r"`([\w.+-]+)`", body))
    assert set(repos) == {"BaseOS", "AppStream", "EPEL"}, set(repos)
    wanted = set()
    for line in (rpms.query("--requires") + rpms.query("--recommends")).splitlines():
        if not line.startswith(("/", "rpmlib(", "config(")):
            wanted |= set(re.findall(r"[a-z][\w.+-]*", line.split(" >")[0])) - {"or"}
    for name in sorted(wanted):
        found = [repo for repo, names in repos.items() if name in names]
        assert len(found) == 1, f"README: {name} is under {found or 'no repository'}"
