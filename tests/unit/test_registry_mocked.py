"""The registry client without a registry: its pure parts (challenges, plain HTTP, credentials)
and protocol corners played by httpx.MockTransport (bearer token flow, retries, schema 1, a wrong
manifest digest, an oversized config). These prove the client's logic, not that it speaks to a
real registry: tests/host/test_registry.py pulls from Debian's docker-registry, and its bearer
tests ask a real token server."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers.layout import small_layer
from helpers.store import blob_files

from sdctr.image import auth as sdctr_auth
from sdctr.image import registry
from sdctr.image import store as images
from sdctr.log import SdctrError
from sdctr.paths import Paths

pytestmark = pytest.mark.unit

HOST_ARCH = images.host_architecture()


# --- pure parts --------------------------------------------------------------------------------------

def test_challenge_parsing() -> None:
    scheme, params = registry._parse_challenge(
        'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",'
        'scope="repository:library/busybox:pull"')
    assert scheme == "bearer"
    assert params == {"realm": "https://auth.docker.io/token", "service": "registry.docker.io",
                      "scope": "repository:library/busybox:pull"}


def test_plain_http_only_where_allowed() -> None:
    assert registry._plain_http("localhost:5000", ())
    assert registry._plain_http("127.0.0.2:5000", ())
    assert not registry._plain_http("registry.example.com", ())
    assert registry._plain_http("registry.example.com:5000", ["registry.example.com:5000"])
    assert registry._plain_http("registry.example.com:5000", ["registry.example.com"])


def test_docker_hub_credentials(tmp_path: Path) -> None:
    auth = tmp_path / "auth.json"
    auth.write_text(json.dumps({"auths": {"https://index.docker.io/v1/": {"auth": _b64("me:pw")}}}))
    assert sdctr_auth.credentials(auth, "docker.io") == ("me", "pw")
    assert sdctr_auth.credentials(auth, "quay.io") is None


def _b64(text: str) -> str:
    import base64

    return base64.b64encode(text.encode()).decode()


# --- protocol corners, against httpx.MockTransport (no network) ---------------------------------------

FAKE = "registry.example.com"


def _fake_image() -> dict[str, bytes]:
    """path -> body of a one-layer OCI image, plus "manifest" and "digest"."""
    import gzip
    import hashlib

    tar = small_layer("fake", b"fake\n")
    layer = gzip.compress(tar, mtime=0)

    def sha(b: bytes) -> str:
        return "sha256:" + hashlib.sha256(b).hexdigest()

    config = json.dumps({"architecture": HOST_ARCH, "os": "linux", "config": {"Cmd": ["/fake"]},
                         "rootfs": {"type": "layers", "diff_ids": [sha(tar)]}}).encode()
    manifest = json.dumps({"schemaVersion": 2, "mediaType": registry.MEDIA_OCI_MANIFEST,
                           "config": {"mediaType": images.MEDIA_CONFIG, "digest": sha(config),
                                      "size": len(config)},
                           "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                                       "digest": sha(layer), "size": len(layer)}]}).encode()
    return {f"/v2/team/app/blobs/{sha(config)}": config, f"/v2/team/app/blobs/{sha(layer)}": layer,
            "/v2/team/app/manifests/1": manifest, f"/v2/team/app/manifests/{sha(manifest)}": manifest,
            "layer": sha(layer).encode(), "digest": sha(manifest).encode()}


def _serve(monkeypatch: pytest.MonkeyPatch, handler: object) -> None:
    import httpx

    real = httpx.Client
    transport = httpx.MockTransport(handler)  # type: ignore[arg-type]
    monkeypatch.setattr(httpx, "Client", lambda **kw: real(transport=transport, **kw))
    monkeypatch.setattr(registry, "_RETRY_PAUSE", 0.0)


def _content(path: str, body: bytes = b"") -> dict[str, str]:
    media = registry.MEDIA_OCI_MANIFEST if "/manifests/" in path else "application/octet-stream"
    return {"Content-Type": media}


def test_bearer_token_flow(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import httpx

    content = _fake_image()
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(f"{request.url.host}{request.url.path}")
        assert request.url.scheme == "https"
        if request.url.host == "auth.example.com":
            assert request.url.params["service"] == "reg"
            assert request.url.params["scope"] == "repository:team/app:pull"
            return httpx.Response(200, json={"token": "t0k"})
        if request.headers.get("Authorization") != "Bearer t0k":
            return httpx.Response(401, headers={"WWW-Authenticate": 'Bearer realm="https://auth.example.com/token",'
                                                                    'service="reg",scope="repository:team/app:pull"'})
        body = content.get(request.url.path)
        return httpx.Response(200, content=body, headers=_content(request.url.path, body or b"")) if body \
            else httpx.Response(404)

    _serve(monkeypatch, handler)
    paths = Paths.from_root(str(tmp_path))
    image = registry.pull(paths, f"{FAKE}/team/app:1")
    assert image.config.cmd == ("/fake",)
    assert images.resolve(paths, f"{FAKE}/team/app:1").id == image.id
    assert seen.count("auth.example.com/token") == 1


def test_retries_on_5xx_not_on_4xx(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import httpx

    content = _fake_image()
    layer_path = f"/v2/team/app/blobs/{content['layer'].decode()}"
    calls = {"n": 0, "status": 503}

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == layer_path:
            calls["n"] += 1
            if calls["n"] <= 2:
                return httpx.Response(calls["status"])
        body = content.get(request.url.path)
        return httpx.Response(200, content=body, headers=_content(request.url.path, body or b"")) if body \
            else httpx.Response(404)

    _serve(monkeypatch, handler)
    registry.pull(Paths.from_root(str(tmp_path / "a")), f"{FAKE}/team/app:1")
    assert calls["n"] == 3
    calls.update(n=0, status=404)
    with pytest.raises(SdctrError, match="404"):
        registry.pull(Paths.from_root(str(tmp_path / "b")), f"{FAKE}/team/app:1")
    assert calls["n"] == 1
    assert blob_files(tmp_path / "b") == set()


def test_a_registry_busy_every_time_is_given_up_on(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import httpx

    calls: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request.url.path)
        return httpx.Response(503)

    _serve(monkeypatch, handler)
    given_up = rf"answered 503 to GET \S*/manifests/1 \({registry.ATTEMPTS} attempts\)"
    with pytest.raises(SdctrError, match=given_up):
        registry.pull(Paths.from_root(str(tmp_path)), f"{FAKE}/team/app:1")
    assert len(calls) == registry.ATTEMPTS
    assert blob_files(tmp_path) == set()


def test_schema1_refused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import httpx

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"schemaVersion": 1, "name": "team/app", "fsLayers": []},
                              headers={"Content-Type": registry.MEDIA_SCHEMA1[1]})

    _serve(monkeypatch, handler)
    with pytest.raises(SdctrError, match="schema 1"):
        registry.pull(Paths.from_root(str(tmp_path)), f"{FAKE}/team/app:1")


def test_manifest_digest_verified(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import httpx

    content = _fake_image()
    wanted = "sha256:" + "0" * 64

    def handler(request: httpx.Request) -> httpx.Response:
        body = content["/v2/team/app/manifests/1"]
        return httpx.Response(200, content=body, headers=_content(request.url.path, body))

    _serve(monkeypatch, handler)
    with pytest.raises(SdctrError, match=f"manifest {wanted}"):
        registry.pull(Paths.from_root(str(tmp_path)), f"{FAKE}/team/app@{wanted}")
    assert blob_files(tmp_path) == set()


def test_an_oversized_config_is_refused_before_it_is_fetched(monkeypatch: pytest.MonkeyPatch,
                                                             tmp_path: Path) -> None:
    import httpx

    content = _fake_image()
    manifest = json.loads(content["/v2/team/app/manifests/1"])
    manifest["config"]["size"] = images.MAX_DOCUMENT + 1
    fetched: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        fetched.append(request.url.path)
        body = json.dumps(manifest).encode() if "/manifests/" in request.url.path else b"x"
        return httpx.Response(200, content=body, headers=_content(request.url.path, body))

    _serve(monkeypatch, handler)
    with pytest.raises(SdctrError, match=f"is {images.MAX_DOCUMENT + 1} bytes, more than"):
        registry.pull(Paths.from_root(str(tmp_path)), f"{FAKE}/team/app:1")
    assert not [p for p in fetched if "/blobs/" in p]
    assert blob_files(tmp_path) == set()
