"""Pulling images from a registry (Docker Registry HTTP API v2 / OCI distribution).

    GET /v2/<name>/manifests/<tag|digest>   an OCI index or Docker manifest list (one platform is
                                            chosen), or an OCI / Docker schema 2 image manifest
    GET /v2/<name>/blobs/<digest>           the config and the layers, streamed into the store

Every blob is checked against its digest while it streams into a temporary file in the store and
only renamed into place when it matches, so a corrupt or truncated download leaves nothing behind.
The registry's manifest is stored byte for byte: its digest stays the one the registry shows, and
the image id is the digest of the pulled config, as Docker has it.

Auth follows Docker: anonymous first; a 401 with a Bearer challenge fetches a token from the realm
(with the user's credentials when there are some), a Basic challenge uses the credentials of the
auth file (sdctr.auth). `sdctr login` checks credentials with the same flow against GET /v2/.

Mirrors (sdctr.config) are tried in order before the registry itself, as containerd and podman do: a
mirror that is down, refuses us or lacks the image is skipped. Whatever a mirror serves is checked
against the digests like anything else, so a mirror can make a pull fail over, never wrong.
"""

from __future__ import annotations

import base64
import concurrent.futures
import contextlib
import functools
import hashlib
import ipaddress
import re
import ssl
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from sdctr import config
from sdctr.image import auth
from sdctr.image import store as images
from sdctr.image.progress import Event
from sdctr.log import SdctrError, debug
from sdctr.oci.digest import digest_hex, is_digest
from sdctr.paths import Paths
from sdctr.record import Record

if TYPE_CHECKING:
    import httpx

MEDIA_OCI_INDEX = "application/vnd.oci.image.index.v1+json"
MEDIA_DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MEDIA_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MEDIA_SCHEMA1 = ("application/vnd.docker.distribution.manifest.v1+json",
                 "application/vnd.docker.distribution.manifest.v1+prettyjws")
_INDEXES = (MEDIA_OCI_INDEX, MEDIA_DOCKER_LIST)
_MANIFESTS = (MEDIA_OCI_MANIFEST, MEDIA_DOCKER_MANIFEST)
_ACCEPT = ", ".join((*_INDEXES, *_MANIFESTS))

DOCKER_HUB_API = "registry-1.docker.io"
CONCURRENT_LAYERS = 3
ATTEMPTS = 4
_RETRY_PAUSE = 0.5  # seconds, doubled after each failed attempt
_CHUNK = 1 << 20
_LOGIN_HINT = "sdctr login {domain} (or give credentials in {auth_file})"

Progress = Callable[[Event], None]
_T = TypeVar("_T")


def pull(paths: Paths, ref: str, *, platform: str | None = None,
         registries: config.Registries | None = None, progress: Progress | None = None) -> images.Image:
    """`docker pull`: fetches ``ref`` (NAME[:TAG][@DIGEST]) and tags it ``ref`` in the store.

    ``platform`` is OS/ARCH[/VARIANT] (default linux/<host>); ``registries`` (default: the
    configuration file's) names mirrors and the insecure registries spoken to over plain HTTP
    (localhost and 127.0.0.0/8 always are)."""
    import httpx  # ~130 ms: only when pulling

    r = images.parse_reference(ref)
    if registries is None:
        registries = config.load().registries
    wanted = _parse_platform(platform) if platform else ("linux", images.host_architecture(), "")
    report = _Reporter(progress)
    written: list[str] = []
    report(Event(f"Pulling from {_display_path(r)}", r.tag or r.digest or "latest"))
    try:
        top_digest, up_to_date, manifest_digest = _from_first_that_works(
            endpoints(r.domain, registries),
            lambda endpoint: _pull_from(_Session(paths, endpoint, r), ref, platform=platform, wanted=wanted,
                                        written=written, report=report))
    except (httpx.HTTPError, httpx.InvalidURL) as e:  # what escaped the retries
        images.discard_unused(paths, written)
        raise SdctrError(f"pulling {ref} failed: {e}") from None
    except BaseException:
        images.discard_unused(paths, written)
        raise
    images.discard_unused(paths, [])  # only the stale temporary blobs of killed pulls
    report(Event(f"Digest: {top_digest}"))
    name = r.key if not r.digest else f"{r.repository}@{r.digest}"
    report(Event(f"Status: {'Image is up to date' if up_to_date else 'Downloaded newer image'} for {name}"))
    return images.resolve(paths, f"{r.repository}@{manifest_digest}")


def _pull_from(session: _Session, ref: str, *, platform: str | None, wanted: tuple[str, str, str],
               written: list[str], report: _Reporter) -> tuple[str, bool, str]:
    """One endpoint's try: (the digest asked for, whether the store had it, the image manifest's)."""
    paths, r = session.paths, session.ref
    assert r is not None
    with session:
        top_digest, media, body = session.manifest(r.digest or r.tag or "latest", verify=r.digest)
        if media in _INDEXES:
            child = _select_platform(r, body, wanted)
            manifest_digest, media, body = session.manifest(child, verify=child)
            if media in _INDEXES:
                raise SdctrError(f"{ref}: the index for {'/'.join(p for p in wanted if p)} points to "
                                 "another index (not supported)")
        else:
            manifest_digest = top_digest
        manifest = _parse_image_manifest(ref, body)
        config_desc = manifest["config"]
        layer_descs: list[Mapping[str, Any]] = manifest.get("layers") or []
        config_bytes = session.blob_bytes(config_desc, written)
        image_config = _parse_config(ref, config_bytes, len(layer_descs))
        if platform:
            _check_platform(ref, image_config, wanted)
        _fetch_layers(session, layer_descs, written, report)
        if not paths.blob(manifest_digest).exists():
            images.write_blob(paths, [body], expect=manifest_digest)
            written.append(manifest_digest)
        key = r.key if r.tag or not r.digest else None
        up_to_date = images.add_manifest(paths, manifest_digest, key)
        return top_digest, up_to_date, manifest_digest


def verify_login(paths: Paths, domain: str, credentials: tuple[str, str],
                 registries: config.Registries | None = None) -> None:
    """Raises SdctrError unless ``domain`` accepts ``credentials``: GET /v2/ with the challenge flow,
    as `docker login` checks them before storing."""
    if registries is None:
        registries = config.load().registries
    try:
        with _Session(paths, origin(domain, registries), None, credentials=credentials) as session, \
                session.get(f"{session.base}/"):
            pass
    except _Denied:
        raise SdctrError(f"login to {domain} failed: the registry refused the username or password"
                         ) from None


def catalog(paths: Paths, domain: str, registries: config.Registries | None = None,
            page: int = 100) -> Iterator[str]:
    """The repositories of ``domain`` (GET /v2/_catalog), page after page as its Link headers lead;
    with the auth of the challenge flow, as many registries list only to known users."""
    import httpx

    if registries is None:
        registries = config.load().registries
    endpoint = origin(domain, registries)
    url: str | None = f"{endpoint.url}/v2/_catalog?n={page}"
    try:
        with _Session(paths, endpoint, None) as session:
            while url:
                with session.get(url) as resp:
                    resp.read()
                    names = _catalog_page(domain, resp)
                    link = resp.links.get("next", {}).get("url")
                yield from names
                url = str(httpx.URL(url).join(link)) if link else None
    except (httpx.HTTPError, httpx.InvalidURL) as e:
        raise SdctrError(f"listing the repositories of {domain} failed: {e}") from None


def _catalog_page(domain: str, resp: httpx.Response) -> list[str]:
    try:
        names = resp.json()["repositories"] or []
    except (ValueError, KeyError, TypeError):
        raise SdctrError(f"registry {domain} answered GET /v2/_catalog with no repository list") from None
    return [n for n in names if isinstance(n, str)]


# --- the conversation with the registry --------------------------------------------------------------

class Endpoint(Record):
    """Where a registry's requests go: the registry itself or one of its mirrors."""

    name: str  # host[:port]: what messages name, and the key of its credentials
    url: str  # scheme://host[:port]
    mirror: bool = False


def origin(domain: str, registries: config.Registries) -> Endpoint:
    host = DOCKER_HUB_API if domain == images.DEFAULT_DOMAIN else domain
    return Endpoint(domain, f"{_scheme(domain, registries.insecure)}://{host}")


def endpoints(domain: str, registries: config.Registries) -> list[Endpoint]:
    """The mirrors of ``domain`` in their order, then the registry itself."""
    mirrors = [Endpoint(m.host, f"{m.scheme or _scheme(m.host, registries.insecure)}://{m.host}", mirror=True)
               for m in registries.mirrors_of(domain)]
    return [*mirrors, origin(domain, registries)]


def _from_first_that_works(candidates: Sequence[Endpoint], attempt: Callable[[Endpoint], _T]) -> _T:
    import httpx

    for endpoint in candidates[:-1]:
        try:
            return attempt(endpoint)
        except (SdctrError, httpx.HTTPError, httpx.InvalidURL) as e:
            debug(f"mirror {endpoint.url} failed ({_reason(e)}); trying the next")
    return attempt(candidates[-1])


def http_client() -> httpx.Client:
    """The one HTTP client configuration for registries and Docker Hub's search: the system's trust
    store (update-ca-trust on RHEL, update-ca-certificates on Debian; also SSL_CERT_FILE), as
    docker and podman use it, rather than httpx's bundled certifi copy."""
    import httpx

    return httpx.Client(follow_redirects=True, timeout=httpx.Timeout(30.0, connect=10.0),
                        headers={"User-Agent": "sdctr"}, verify=ssl.create_default_context())


class _Session:
    """One httpx client for one endpoint and repository (None: the registry as a whole), with the
    auth it has earned. A mirror gets one attempt: the next endpoint is the retry."""

    def __init__(self, paths: Paths, endpoint: Endpoint, r: images.Reference | None, *,
                 credentials: tuple[str, str] | None = None):

        self.paths, self.ref = paths, r
        self.base = f"{endpoint.url}/v2/{r.path}" if r else f"{endpoint.url}/v2"
        self.domain = endpoint.name
        self.what = r.repository if r else endpoint.name
        self.attempts = 1 if endpoint.mirror else ATTEMPTS
        self.auth_file = auth.auth_file(paths)
        self.given_credentials = credentials
        self.auth_header: str | None = None
        self.lock = threading.Lock()
        self.client = http_client()

    @functools.cached_property
    def credentials(self) -> tuple[str, str] | None:
        """Those given (login), else the auth file's, read at the first challenge only: a broken
        auth file must not stop an anonymous pull."""
        return self.given_credentials or auth.credentials(self.auth_file, self.domain)

    def __enter__(self) -> _Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.client.close()

    @contextlib.contextmanager
    def get(self, url: str, accept: str | None = None) -> Iterator[httpx.Response]:
        """A streamed GET with auth and retries; yields a 2xx response, raises SdctrError else."""
        resp = self.retrying(f"GET {url}", lambda: self._open(url, accept), self._get_failed)
        try:
            yield resp
        finally:
            resp.close()

    def _open(self, url: str, accept: str | None) -> httpx.Response:
        """One try at GET ``url``, a challenge answered once: the response, its body unread, if it
        is no error; _Busy for an answer worth another try (429, 5xx); SdctrError else."""
        headers = {"Accept": accept} if accept else {}
        challenged = False
        while True:
            if self.auth_header:
                headers["Authorization"] = self.auth_header
            debug(f"+ GET {url}")
            resp = self.client.send(self.client.build_request("GET", url, headers=headers), stream=True)
            if resp.status_code < 400:
                return resp
            try:
                resp.read()
            finally:
                resp.close()
            if resp.status_code == 401 and not challenged:
                self._authenticate(resp)
                challenged = True
            elif resp.status_code in (401, 403):
                raise self._denied(resp)
            elif resp.status_code == 429 or resp.status_code >= 500:
                raise _Busy(f"registry {self.domain} answered {resp.status_code} to GET {url}")
            else:
                raise SdctrError(_describe_error(self.domain, self.what, url, resp))

    def _get_failed(self, e: Exception) -> SdctrError:
        if isinstance(e, _Busy):
            return SdctrError(f"{e} ({self.attempts} attempts)")
        return SdctrError(f"cannot reach registry {self.domain}: {_reason(e)}",
                          hint=f"is {self.base.split('/v2')[0]} up? ({self.attempts} attempts)")

    def _authenticate(self, resp: httpx.Response) -> None:
        scheme, params = _parse_challenge(resp.headers.get("WWW-Authenticate", ""))
        creds = self.credentials
        if scheme == "bearer" and "realm" in params:
            query: dict[str, str] = {k: params[k] for k in ("service", "scope") if k in params}
            if self.ref:
                query.setdefault("scope", f"repository:{self.ref.path}:pull")
            auth = (creds[0], creds[1]) if creds else None
            token_resp = self.client.get(params["realm"], params=query, auth=auth)
            if token_resp.status_code in (401, 403):
                raise self._denied(token_resp)
            if token_resp.status_code >= 400:
                raise SdctrError(f"registry {self.domain}: the token service {params['realm']} answered "
                                 f"{token_resp.status_code}")
            try:
                data = token_resp.json()
                token = data.get("token") or data["access_token"]
            except (ValueError, KeyError, AttributeError):
                raise SdctrError(f"registry {self.domain}: the token service gave no token") from None
            with self.lock:
                self.auth_header = f"Bearer {token}"
        elif scheme == "basic":
            if not creds:
                raise self._denied(resp)
            raw = base64.b64encode(f"{creds[0]}:{creds[1]}".encode()).decode()
            with self.lock:
                self.auth_header = f"Basic {raw}"
        else:
            raise self._denied(resp)

    def _denied(self, resp: httpx.Response) -> _Denied:
        why = "the credentials were refused" if self.credentials else "it needs credentials"
        what = f"{self.ref.path} ({resp.status_code}: {why}, or the repository does not exist)" if self.ref \
            else f"us ({resp.status_code}: {why})"
        return _Denied(f"registry {self.domain} denied access to {what}",
                       hint=_LOGIN_HINT.format(domain=self.domain, auth_file=self.auth_file))

    def retrying(self, what: str, action: Callable[[], _T],
                 give_up: Callable[[Exception], SdctrError] | None = None) -> _T:
        """``action``, tried again while it fails as a connection can (dropped, cut short, a busy
        registry): self.attempts tries, the pause between them doubling. The last failure becomes
        ``give_up(error)``; by default, that ``what`` could not be fetched, and why."""
        import httpx

        pause = _RETRY_PAUSE
        for attempt in range(1, self.attempts + 1):
            try:
                return action()
            except (httpx.TransportError, _Incomplete, _Busy) as e:
                if attempt == self.attempts and give_up:
                    raise give_up(e) from None
                if attempt == self.attempts:
                    raise SdctrError(f"{what} of {self.what} could not be fetched from registry "
                                     f"{self.domain}: {_reason(e)} ({self.attempts} attempts)") from None
                debug(f"{what}: {_reason(e)}; retrying")
            time.sleep(pause)
            pause *= 2
        raise AssertionError("unreachable")

    def manifest(self, reference: str, *, verify: str | None) -> tuple[str, str, bytes]:
        """(digest, media type, bytes); ``verify``: the digest the bytes must have."""
        url = f"{self.base}/manifests/{reference}"

        def read() -> tuple[bytes, str]:
            with self.get(url, _ACCEPT) as resp:
                body = b""
                for chunk in resp.iter_bytes():
                    body += chunk
                    if len(body) > images.MAX_DOCUMENT:
                        raise SdctrError(f"{url}: the manifest is larger than {images.MAX_DOCUMENT} bytes")
                return body, resp.headers.get("Content-Type", "").split(";")[0].strip()

        body, content_type = self.retrying(f"manifest {reference}", read)
        digest = "sha256:" + hashlib.sha256(body).hexdigest()
        if verify and digest != verify:
            raise SdctrError(f"manifest {verify} of {self.what} has the digest {digest}: "
                             "the registry served other content")
        doc = images.parse_document(body, f"{url}: the manifest")
        media = doc.get("mediaType") or content_type
        if doc.get("schemaVersion") == 1 or media in MEDIA_SCHEMA1:
            raise SdctrError(f"{self.what}:{reference} is a Docker schema 1 image, which sdctr "
                             "does not support", hint="push it again with a current Docker or skopeo")
        if media not in (*_INDEXES, *_MANIFESTS):
            media = MEDIA_OCI_INDEX if "manifests" in doc else MEDIA_OCI_MANIFEST
        return digest, media, body

    def blob_bytes(self, desc: Mapping[str, Any], written: list[str]) -> bytes:
        """A document blob (the image config), whole; one its descriptor says is over
        images.MAX_DOCUMENT is refused before a byte of it is fetched."""
        digest = _descriptor_digest(desc)
        size = _descriptor_size(desc, self.what)
        if size > images.MAX_DOCUMENT:
            raise SdctrError(f"{self.what}: its image config {digest} is {size} bytes, more than "
                             f"{images.MAX_DOCUMENT}: not an image config")
        if not self.paths.blob(digest).exists():
            self.fetch_blob(desc, written)
        return self.paths.blob(digest).read_bytes()

    def fetch_blob(self, desc: Mapping[str, Any], written: list[str],
                   on_bytes: Callable[[int], None] | None = None) -> None:
        """Streams the blob into the store; ``on_bytes(received so far)`` after every chunk."""
        digest = _descriptor_digest(desc)
        size = _descriptor_size(desc, self.what)
        url = f"{self.base}/blobs/{digest}"

        def download() -> None:
            with self.get(url) as resp:
                chunks = _bounded(resp, size, on_bytes)
                images.write_blob(self.paths, chunks, expect=digest, origin="the registry")

        if not self.paths.blob(digest).exists():
            self.retrying(f"blob {digest}", download)
            with self.lock:
                written.append(digest)


class _Incomplete(Exception):
    """The blob stream ended early; retried like a dropped connection."""


class _Busy(Exception):
    """The registry answered 429 or 5xx; retried like a dropped connection."""


class _Denied(SdctrError):
    """The registry refused us (401/403), with or without credentials."""


def _bounded(resp: httpx.Response, size: int,
             on_bytes: Callable[[int], None] | None = None) -> Iterator[bytes]:
    got = 0
    # A blob is served as is; iter_raw skips httpx's decoder and re-chunker (a third of the CPU a
    # download costs). Should a server add a Content-Encoding, the decoder is needed after all (and
    # a response already read in full has only decoded content to give).
    encoded = resp.headers.get("Content-Encoding", "identity") not in ("", "identity")
    raw = not encoded and not resp.is_stream_consumed
    for chunk in resp.iter_raw() if raw else resp.iter_bytes(_CHUNK):
        got += len(chunk)
        if got > size:
            raise SdctrError(f"{resp.url}: the registry sent more than the {size} bytes announced")
        if on_bytes:
            on_bytes(got)
        yield chunk
    if got < size:
        raise _Incomplete(f"the connection ended after {got} of {size} bytes")


def _fetch_layers(session: _Session, descs: Sequence[Mapping[str, Any]], written: list[str],
                  report: _Reporter) -> None:
    """The layers the store lacks, fetched concurrently and verified against their digests.

    Their content is read through the tar rules once, when a container first needs them unpacked
    (the snapshotter's unpack refuses a hostile entry there, naming image, layer and entry): reading
    every layer here as well cost a pull a third of its time, for a check that unpacking repeats."""
    todo: dict[str, Mapping[str, Any]] = {}
    for d in descs:
        digest = _descriptor_digest(d)
        if session.paths.blob(digest).exists():
            report(Event("Already exists", _short(digest)))
        elif digest not in todo:
            report(Event("Pulling fs layer", _short(digest)))
            todo[digest] = d

    def one(d: Mapping[str, Any]) -> None:
        short, total = _short(_descriptor_digest(d)), _descriptor_size(d, session.what)
        session.fetch_blob(d, written, lambda got: report(Event("Downloading", short, got, total)))
        report(Event("Download complete", short))

    pool = concurrent.futures.ThreadPoolExecutor(CONCURRENT_LAYERS, thread_name_prefix="sdctr-pull")
    try:
        futures = [pool.submit(one, d) for d in todo.values()]
        for f in concurrent.futures.as_completed(futures):
            f.result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    for digest in todo:
        report(Event("Pull complete", _short(digest)))


# --- the store ---------------------------------------------------------------------------------------

# --- documents ---------------------------------------------------------------------------------------

def _parse_platform(text: str) -> tuple[str, str, str]:
    parts = text.split("/")
    if len(parts) not in (2, 3) or not all(re.fullmatch(r"[a-z0-9_.-]+", p) for p in parts):
        raise SdctrError(f"invalid platform {text!r}", hint="OS/ARCH[/VARIANT], e.g. linux/arm64")
    return parts[0], parts[1], parts[2] if len(parts) == 3 else ""


def _select_platform(r: images.Reference, body: bytes, wanted: tuple[str, str, str]) -> str:
    index = images.parse_document(body, f"{r.key}: the index")
    entries = [m for m in index.get("manifests") or [] if isinstance(m, dict)]
    available = []
    os_, arch, variant = wanted
    for m in entries:
        p = m.get("platform") or {}
        if p.get("os") == "unknown":  # buildkit attestations
            continue
        available.append("/".join(x for x in (p.get("os"), p.get("architecture"), p.get("variant")) if x))
        if (p.get("os"), p.get("architecture")) == (os_, arch) and variant in ("", p.get("variant")):
            return _descriptor_digest(m)
    want = "/".join(x for x in wanted if x)
    raise SdctrError(f"{r.key}: no image for platform {want} (the registry has: "
                     f"{', '.join(available) or 'none'})", hint="choose one with --platform")


def _parse_image_manifest(ref: str, body: bytes) -> dict[str, Any]:
    doc: dict[str, Any] = images.parse_document(body, f"{ref}: the image manifest")
    config = doc.get("config")
    layers = doc.get("layers")
    if not (isinstance(config, dict) and isinstance(layers, list)
            and all(isinstance(x, dict) for x in layers)):
        raise SdctrError(f"{ref}: the image manifest has no config or layers")
    _descriptor_digest(config)
    _descriptor_size(config, ref)
    for d in layers:
        _descriptor_digest(d)
        _descriptor_size(d, ref)
    problem = images.manifest_problem(doc)  # what the store's readers take for granted
    if problem:
        raise SdctrError(f"{ref}: the image manifest is not one sdctr can store: {problem}")
    return doc


def _parse_config(ref: str, data: bytes, n_layers: int) -> dict[str, Any]:
    config: dict[str, Any] = images.parse_document(data, f"{ref}: the image config")
    problem = images.config_problem(config, n_layers)
    if problem:
        raise SdctrError(f"{ref}: the image config is not one sdctr can store: {problem}")
    return config


def _check_platform(ref: str, config: Mapping[str, Any], wanted: tuple[str, str, str]) -> None:
    got = (config.get("os", ""), config.get("architecture", ""))
    if got != wanted[:2]:
        raise SdctrError(f"{ref} is for {'/'.join(got)}, not {wanted[0]}/{wanted[1]}")


def _descriptor_digest(desc: Mapping[str, Any]) -> str:
    digest = desc.get("digest")
    if not is_digest(digest):
        raise SdctrError(f"unsupported digest {digest!r} in the manifest (sdctr takes sha256:<64 hex>)")
    return str(digest)


def _descriptor_size(desc: Mapping[str, Any], ref: str) -> int:
    """The size a descriptor gives its blob, which bounds the download: one without (OCI requires
    it) would let a registry stream without end into the store."""
    size = desc.get("size")
    if type(size) is not int or size < 0:
        raise SdctrError(f"{ref}: blob {desc.get('digest')}: the manifest gives it no size, so its "
                         "download could not be bounded (an OCI descriptor must have one)")
    return size


# --- auth and transport -------------------------------------------------------------------------------

_CHALLENGE_PARAM = re.compile(r'(\w+)=(?:"([^"]*)"|([^,\s]*))')


def _parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    scheme, _, rest = header.strip().partition(" ")
    return scheme.lower(), {m.group(1).lower(): m.group(2) if m.group(2) is not None else m.group(3)
                            for m in _CHALLENGE_PARAM.finditer(rest)}


def _scheme(domain: str, insecure: Sequence[str]) -> str:
    return "http" if _plain_http(domain, insecure) else "https"


def _plain_http(domain: str, insecure: Sequence[str]) -> bool:
    host = re.sub(r":\d+$", "", domain).strip("[]")
    if domain in insecure or host in insecure or host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _describe_error(domain: str, what: str, url: str, resp: httpx.Response) -> str:
    codes = ""
    with contextlib.suppress(ValueError, AttributeError, TypeError):
        codes = ", ".join(f"{e.get('code')}: {e.get('message')}" for e in resp.json().get("errors") or [])
    if resp.status_code == 404 and "/manifests/" in url:
        return f"{what}: manifest {url.rsplit('/', 1)[1]} not found in {domain}" + (
            f" ({codes})" if codes else "")
    return f"registry {domain} answered {resp.status_code} to GET {url}" + (f" ({codes})" if codes else "")


def _reason(e: BaseException) -> str:
    return str(e) or type(e).__name__


def _display_path(r: images.Reference) -> str:
    return r.path if r.domain == images.DEFAULT_DOMAIN else f"{r.domain}/{r.path}"


def _short(digest: str) -> str:
    return digest_hex(digest)[:12]


class _Reporter:
    """progress(event) from any thread, one event at a time."""

    def __init__(self, progress: Progress | None):
        self.progress = progress
        self.lock = threading.Lock()

    def __call__(self, event: Event) -> None:
        if self.progress:
            with self.lock:
                self.progress(event)
