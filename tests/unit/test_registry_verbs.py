"""The pure parts of login, search, sdctr.yaml and pull progress (the real registries are in
tests/host/test_registry_extras.py). Docker Hub cannot be reached from the tests, so its search
answer is a sample in the shape it serves, and its token flow is played by httpx.MockTransport."""

from __future__ import annotations

import base64
import io
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from sdctr import config
from sdctr.image import auth, progress, registry, search
from sdctr.image.progress import DOWNLOADING, Event, TerminalBoard
from sdctr.log import SdctrError
from sdctr.paths import Paths

GOLDEN = Path(__file__).parent / "golden"


@pytest.fixture(autouse=True)
def _no_machine_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SDCTR_CONFIG", str(tmp_path / "absent.yaml"))
    monkeypatch.delenv("REGISTRY_AUTH_FILE", raising=False)


# --- sdctr.yaml -----------------------------------------------------------------------------------------

def test_no_config_file_means_defaults_and_no_yaml_import(tmp_path: Path) -> None:
    code = ("import sys; from sdctr import config; c = config.load(); "
            "print(c == config.Config(), 'yaml' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["True", "False"]


def test_config_mirrors_and_insecure(tmp_path: Path) -> None:
    path = tmp_path / "sdctr.yaml"
    path.write_text("registries:\n"
                    "  mirrors:\n"
                    "    docker.io: ['https://mirror.example.com/', 'registry.lan:5000']\n"
                    "    quay.io: http://127.0.0.1:5001\n"
                    "  insecure: [registry.lan:5000]\n")
    c = config.load(path).registries
    assert [m.text for m in c.mirrors_of("docker.io")] == ["https://mirror.example.com", "registry.lan:5000"]
    assert c.mirrors_of("ghcr.io") == ()
    assert c.insecure == ("registry.lan:5000",)
    assert [(e.url, e.mirror) for e in registry.endpoints("docker.io", c)] == [
        ("https://mirror.example.com", True), ("http://registry.lan:5000", True),  # insecure: plain HTTP
        ("https://registry-1.docker.io", False)]
    assert [e.url for e in registry.endpoints("quay.io", c)] == ["http://127.0.0.1:5001", "https://quay.io"]


@pytest.mark.parametrize(("text", "words"), [
    ("registries: [a]\n", ["registries must be a mapping"]),
    ("registries:\n  mirrors:\n    docker.io: ['ftp://m']\n", ["registries.mirrors.docker.io", "ftp://m"]),
    ("registries:\n  mirrors:\n    docker.io: ['https://m/v2/proxy']\n", ["not a mirror address"]),
    ("registries:\n  insecure: ['not a host']\n", ["registries.insecure", "not a host"]),
    ("registries: {mirrors: [\n", ["not valid YAML"]),
])
def test_config_refusals_name_the_key(tmp_path: Path, text: str, words: list[str]) -> None:
    path = tmp_path / "sdctr.yaml"
    path.write_text(text)
    with pytest.raises(SdctrError) as e:
        config.load(path)
    for w in [str(path), *words]:
        assert w in str(e.value)


# --- auth.json --------------------------------------------------------------------------------------------

def test_store_and_remove_keep_the_rest(tmp_path: Path) -> None:
    path = tmp_path / "auth.json"
    path.write_text(json.dumps({"auths": {"docker.io": {"auth": _b64("old:pw")}, "quay.io": {"auth": "x"}},
                                "credHelpers": {"gcr.io": "gcloud"}}))
    auth.store(path, "docker.io", "me", "s3cret")
    doc = json.loads(path.read_text())
    # one entry for Docker Hub, under the key Docker writes, whatever spelling was there before
    assert doc["auths"] == {"quay.io": {"auth": "x"}, auth.DOCKER_HUB_KEY: {"auth": _b64("me:s3cret")}}
    assert doc["credHelpers"] == {"gcr.io": "gcloud"}
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert auth.credentials(path, "docker.io") == ("me", "s3cret")
    assert auth.remove(path, "docker.io")
    assert not auth.remove(path, "docker.io")
    assert json.loads(path.read_text())["auths"] == {"quay.io": {"auth": "x"}}
    assert [p.name for p in tmp_path.iterdir()] == ["auth.json"]


def test_a_new_auth_file_is_private_from_the_start(tmp_path: Path) -> None:
    path = tmp_path / "dir" / "auth.json"
    old = os.umask(0)
    try:
        auth.store(path, "registry.lan:5000", "u", "p")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert auth.credentials(path, "registry.lan:5000") == ("u", "p")


@pytest.mark.parametrize(("typed", "domain"), [
    ("docker.io", "docker.io"), ("https://index.docker.io/v1/", "docker.io"),
    ("index.docker.io", "docker.io"), ("registry-1.docker.io", "docker.io"),
    ("http://registry.lan:5000/", "registry.lan:5000"), ("quay.io", "quay.io"),
])
def test_registry_domain(typed: str, domain: str) -> None:
    assert auth.registry_domain(typed) == domain


def test_ask_refuses_contradicting_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(SdctrError, match="mutually exclusive"):
        auth.ask("quay.io", "u", "p", True)
    with pytest.raises(SdctrError, match="needs --username"):
        auth.ask("quay.io", None, None, True)
    monkeypatch.setattr(sys, "stdin", io.StringIO("pw\n"))
    assert auth.ask("quay.io", "u", None, True) == ("u", "pw")


# --- login against a Bearer registry (Docker Hub's flow) -------------------------------------------

def test_login_with_a_bearer_challenge(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import httpx

    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(f"{request.url.host}{request.url.path}?{request.url.query.decode()}")
        if request.url.host == "auth.example.com":
            good = "Basic " + _b64("me:right")
            return httpx.Response(200, json={"token": "t"}) if request.headers.get("Authorization") == good \
                else httpx.Response(401)
        if request.headers.get("Authorization") == "Bearer t":
            return httpx.Response(200, json={})
        return httpx.Response(401, headers={"WWW-Authenticate": 'Bearer realm="https://auth.example.com/token",'
                                                                'service="reg.example.com"'})

    real = httpx.Client
    monkeypatch.setattr(httpx, "Client", lambda **kw: real(transport=httpx.MockTransport(handler), **kw))
    paths = Paths.from_root(str(tmp_path))
    registry.verify_login(paths, "reg.example.com", ("me", "right"), config.Registries())
    # no repository scope: login asks for a token for the registry as a whole, as docker does
    assert seen == ["reg.example.com/v2/?", "auth.example.com/token?service=reg.example.com",
                    "reg.example.com/v2/?"]
    with pytest.raises(SdctrError, match=r"login to reg\.example\.com failed: the registry refused"):
        registry.verify_login(paths, "reg.example.com", ("me", "wrong"), config.Registries())


# --- search -------------------------------------------------------------------------------------------

def test_hub_answer_parsed() -> None:
    results = search.parse_hub(json.loads((GOLDEN / "hub_search_busybox.json").read_text()))
    assert [r.name for r in results] == ["busybox", "radial/busyboxplus", "yauritux/busybox-curl",
                                         "someone/empty"]
    assert results[0].row() == ["busybox", "Busybox base image.", "3312", "[OK]"]
    assert results[1].row() == ["radial/busyboxplus", "Full-chain, Internet enabled, busybox made f…", "56",
                                ""]
    assert len(results[1].row()[1]) == search.DESCRIPTION_WIDTH
    assert results[1].row(truncate=False)[1].endswith("git and cURL flavors.")
    assert results[2].row()[1] == "Busybox with CURL"
    assert results[3].row() == ["someone/empty", "", "0", ""]
    assert results[0].as_json() == {"Name": "busybox", "Description": "Busybox base image.",
                                    "StarCount": 3312, "IsOfficial": True}


@pytest.mark.parametrize("doc", [[], {"results": None}, {"results": [{"description": "no name"}]}])
def test_hub_answer_refused(doc: object) -> None:
    with pytest.raises(SdctrError, match="Docker Hub"):
        search.parse_hub(doc)


def test_hub_search_request(monkeypatch: pytest.MonkeyPatch) -> None:
    import httpx

    sample = (GOLDEN / "hub_search_busybox.json").read_bytes()
    asked: list[httpx.URL] = []

    def handler(request: httpx.Request) -> httpx.Response:
        asked.append(request.url)
        return httpx.Response(200, content=sample, headers={"Content-Type": "application/json"})

    real = httpx.Client
    monkeypatch.setattr(httpx, "Client", lambda **kw: real(transport=httpx.MockTransport(handler), **kw))
    results = search.search(Paths.from_root("/nonexistent"), "busybox", limit=2)
    assert str(asked[0]) == "https://index.docker.io/v1/search?q=busybox&n=2"
    assert [r.name for r in results] == ["busybox", "radial/busyboxplus"]  # --limit, whatever was served


@pytest.mark.parametrize(("text", "split"), [
    ("nginx", ("docker.io", "nginx")), ("bitnami/nginx", ("docker.io", "bitnami/nginx")),
    ("quay.io/prometheus", ("quay.io", "prometheus")), ("127.0.0.1:5000/team", ("127.0.0.1:5000", "team")),
    ("localhost/x", ("localhost", "x")), ("docker.io/nginx", ("docker.io", "nginx")),
])
def test_split_term(text: str, split: tuple[str, str]) -> None:
    assert search.split_term(text) == split


def test_search_limits() -> None:
    with pytest.raises(SdctrError, match="positive"):
        search.search(Paths.from_root("/nonexistent"), "x", limit=0)
    with pytest.raises(SdctrError, match="100"):
        search.search(Paths.from_root("/nonexistent"), "x", limit=101)


# --- pull progress ----------------------------------------------------------------------------------

class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


UP, ERASE = "\x1b[{}A", "\r\x1b[2K"


def test_terminal_board_rewrites_lines_in_place() -> None:
    out, clock = io.StringIO(), Clock()
    board = TerminalBoard(out, 80, clock=clock)
    board(Event("Pulling from library/busybox", "latest"))
    board(Event("Pulling fs layer", "aaaaaaaaaaaa"))
    board(Event("Pulling fs layer", "bbbbbbbbbbbb"))
    clock.now += 1
    board(Event(DOWNLOADING, "aaaaaaaaaaaa", 1_230_000, 45_600_000))
    board(Event("Download complete", "aaaaaaaaaaaa"))
    board(Event("Digest: sha256:abc"))
    board.close()
    head, a, b = "latest: Pulling from library/busybox", "aaaaaaaaaaaa: ", "bbbbbbbbbbbb: Pulling fs layer"
    assert out.getvalue() == "".join([
        f"{ERASE}{head}\n",
        f"{UP.format(1)}{ERASE}{head}\n{ERASE}{a}Pulling fs layer\n",
        f"{UP.format(2)}{ERASE}{head}\n{ERASE}{a}Pulling fs layer\n{ERASE}{b}\n",
        f"{UP.format(3)}{ERASE}{head}\n{ERASE}{a}Downloading   1.23MB/45.6MB\n{ERASE}{b}\n",
        f"{UP.format(3)}{ERASE}{head}\n{ERASE}{a}Download complete\n{ERASE}{b}\n",
        "Digest: sha256:abc\n",
    ])


def test_terminal_board_draws_byte_counts_ten_times_a_second_at_most() -> None:
    out, clock = io.StringIO(), Clock()
    board = TerminalBoard(out, 80, clock=clock)
    for i in range(1, 101):  # 100 chunks in 0.5 s
        board(Event(DOWNLOADING, "aaaaaaaaaaaa", i * 1000, 100_000))
        clock.now += 0.005
    assert out.getvalue().count("Downloading") == 5
    board.close()  # the last count is drawn before anything else is said
    assert out.getvalue().endswith(f"{ERASE}aaaaaaaaaaaa: Downloading    100kB/100kB\n")
    board(Event("Status: done"))
    assert out.getvalue().count("100kB/100kB") == 1


def test_progress_bar_on_wide_terminals_and_lines_clipped_to_the_width() -> None:
    event = Event(DOWNLOADING, "aaaaaaaaaaaa", 50_000, 100_000)
    assert event.text(120) == "aaaaaaaaaaaa: Downloading [" + "=" * 25 + ">" + " " * 25 + "]     50kB/100kB"
    out = io.StringIO()
    TerminalBoard(out, 20)(event)
    assert out.getvalue() == f"{ERASE}aaaaaaaaaaaa: Downl\n"


def test_plain_lines_leave_out_byte_counts() -> None:
    out = io.StringIO()
    show = progress.plain_lines(out)
    for e in (Event("Pulling fs layer", "aaaaaaaaaaaa"), Event(DOWNLOADING, "aaaaaaaaaaaa", 1, 2),
              Event("Download complete", "aaaaaaaaaaaa"), Event("Status: done")):
        show(e)
    assert out.getvalue() == "aaaaaaaaaaaa: Pulling fs layer\naaaaaaaaaaaa: Download complete\nStatus: done\n"


@pytest.mark.parametrize(("n", "text"), [(0, "0B"), (999, "999B"), (1000, "1kB"), (2_225_000, "2.225MB"),
                                         (45_600_000_000, "45.6GB")])
def test_human_size_as_docker(n: int, text: str) -> None:
    assert progress.human_size(n, digits=4) == text  # a pull's progress: units.HumanSize


@pytest.mark.parametrize(("n", "binary", "text"), [
    (2_225_000, False, "2.23MB"), (45_600_000_000, False, "45.6GB"),  # docker images: 3 digits
    (1536, True, "1.5KiB"), (268_435_456, True, "256MiB"), (1_234_567_890, True, "1.15GiB"),  # stats
])
def test_human_size_of_images_and_stats(n: int, binary: bool, text: str) -> None:
    assert progress.human_size(n, binary) == text


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()
