"""The one thing setup.cfg cannot say: the wheel's data, generated at build time. The metadata is
in setup.cfg (read by every setuptools the RPM is built with, 50.3.2 and 53.0.0 included).

build_py also runs packaging/manpage.py (the standard library and sdctr's parser: nothing to
install) and adds what it writes to the wheel's data, installed under the prefix (pip: /usr/local,
a venv, or the RPM's /usr), as the RPM installs them:

    share/man/man1/sdctr.1, sdctr-VERB.1     share/man/man5/sdctr.yaml.5, sdctr-containers.5
    share/bash-completion/completions/sdctr  share/zsh/site-functions/_sdctr
    lib/systemd/system-generators/sdctr-generator  (read from /usr/local/lib/... by systemd too)

The sdist carries what this needs (MANIFEST.in): packaging/, units/.
"""

import os
import shutil
import subprocess
import sys

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = os.path.dirname(os.path.abspath(__file__))


class build_py_and_data(build_py):
    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return  # pip install -e (setuptools >= 64) installs no data: nothing to make
        out = os.path.join(self.get_finalized_command("build").build_base, "sdctr-data")
        shutil.rmtree(out, ignore_errors=True)  # a verb gone since the last build: its page too
        # a subprocess: the sdctr it imports is this source tree's, never one installed
        subprocess.run([sys.executable, os.path.join(HERE, "packaging", "manpage.py"), "all", out],
                       check=True, env={**os.environ, "PYTHONPATH": HERE})
        # bash-completion looks the file up by the command's name
        os.replace(os.path.join(out, "sdctr.bash"), os.path.join(out, "sdctr"))
        man = {s: sorted(os.path.join(out, s, n) for n in os.listdir(os.path.join(out, s)))
               for s in ("man1", "man5")}
        data = [
            ("share/man/man1", man["man1"]),
            ("share/man/man5", man["man5"]),
            ("share/bash-completion/completions", [os.path.join(out, "sdctr")]),
            ("share/zsh/site-functions", [os.path.join(out, "_sdctr")]),
            ("lib/systemd/system-generators", ["units/system-generators/sdctr-generator"]),
        ]
        self.distribution.data_files = [*(self.distribution.data_files or []), *data]


setup(cmdclass={"build_py": build_py_and_data})
