"""What pyproject-rpm-macros does with pip and brp-python-bytecompile on Fedora, for
packaging/rpm/build on Debian only (macros.debian): install a wheel into the build root, and list
what %pyproject_save_files lists. Run by the target's python3; the standard library only.

    pyproject_install.py install BUILDROOT SITELIB PYTHON BINDIR PREFIX WHEEL
    pyproject_install.py save-files BUILDROOT SITELIB LISTFILE MODULE...
    pyproject_install.py check-import BUILDROOT SITELIB   (%pyproject_check_import -t)
"""

import compileall
import configparser
import shutil
import sys
import zipfile
from pathlib import Path

SCRIPT = """#!{python}
import sys
from {module} import {func}
sys.exit({func}())
"""


def install(buildroot: Path, sitelib: str, wheel: Path, *, python: str, bindir: str, prefix: str) -> None:
    target = buildroot / sitelib.lstrip("/")
    with zipfile.ZipFile(wheel) as z:
        z.extractall(target)
        info = next(n.split("/")[0] for n in z.namelist() if n.split("/")[0].endswith(".dist-info"))
        # zipfile drops the modes: a file the wheel marks executable (the generator) stays so, as pip
        # keeps it
        for member in z.infolist():
            if member.external_attr >> 16 & 0o111:
                (target / member.filename).chmod(0o755)
    # NAME.data/data/ is installed under the prefix, as pip's --prefix does (the man pages, the
    # completion and the generator: setup.py); the wheel has no other scheme of .data
    for data in target.glob("*.data"):
        schemes = {p.name for p in data.iterdir()}
        if schemes - {"data"}:
            sys.exit(f"{data.name}: no install scheme for {sorted(schemes - {'data'})}")
        shutil.copytree(data / "data", buildroot / prefix.lstrip("/"), dirs_exist_ok=True)
        shutil.rmtree(data)
    (target / info / "RECORD").unlink()  # pip's RECORD names the build root's paths; rpm owns the files
    (target / info / "INSTALLER").write_text("rpm\n")
    entry_points = configparser.ConfigParser(delimiters=("=",))
    entry_points.read(target / info / "entry_points.txt")
    scripts = entry_points.items("console_scripts") if entry_points.has_section("console_scripts") else []
    for name, ref in scripts:
        module, func = ref.strip().split(":")
        script = buildroot / bindir.lstrip("/") / name
        script.parent.mkdir(parents=True, exist_ok=True)
        script.write_text(SCRIPT.format(python=python, module=module, func=func))
        script.chmod(0o755)
    # byte code that names the installed paths, so that python never writes a file rpm does not own
    if not compileall.compile_dir(target, quiet=1, stripdir=str(buildroot), prependdir="/"):
        sys.exit("byte-compilation failed")


def save_files(buildroot: Path, sitelib: str, listfile: Path, modules: list[str]) -> None:
    target = buildroot / sitelib.lstrip("/")
    lines = []
    for module in modules:
        lines.append(f"{sitelib}/{module}/")
        lines += [f"{sitelib}/{p.name}/" for p in sorted(target.glob(f"{module}-*.dist-info"))]
    listfile.write_text("".join(line + "\n" for line in lines))


def check_import(buildroot: Path, sitelib: str) -> None:
    target = buildroot / sitelib.lstrip("/")
    sys.path.insert(0, str(target))
    for top_level in target.glob("*.dist-info/top_level.txt"):
        for module in top_level.read_text().split():
            print(f"import {module}", file=sys.stderr)
            __import__(module)


if __name__ == "__main__":
    verb, *args = sys.argv[1:]
    if verb == "install":
        install(Path(args[0]), args[1], Path(args[5]), python=args[2], bindir=args[3], prefix=args[4])
    elif verb == "check-import":
        check_import(Path(args[0]), args[1])
    else:
        save_files(Path(args[0]), args[1], Path(args[2]), args[3:])
