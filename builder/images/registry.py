"""Read-only image registry client: list an image's tags (OCI distribution API), urllib only.

    where = locate("docker.io/library/nginx")   # Location(registry-1.docker.io, library/nginx)
    tags = RegistryClient().tags(where)

* Names are read as podman does: a first component with a dot or a colon, or `localhost`, is a
  registry host (quay.io, ghcr.io, registry.example.org:5000); otherwise the image is on
  Docker Hub (`docker.io`, asked at registry-1.docker.io), and a single name gets `library/`.
* `GET /v2/REPO/tags/list?n=…`, following the `Link: <…>; rel="next"` pages.
* Token flow: a 401 with `WWW-Authenticate: Bearer realm=…,service=…,scope=…` makes the client
  fetch a token from the realm and ask again; a `Basic` challenge is answered directly. The
  credentials are podman's (builder/images/auth.py: REGISTRY_AUTH_FILE, auth.json); without
  one the token is anonymous, and a registry that wants a login is reported as such.
* `digest(where, tag)`: the sha256 of the manifest the tag names, as `podman pull IMAGE@DIGEST`
  verifies it: for a multi-arch image, the index (manifest list), never one platform's manifest.
* HTTPS, except for registries named in BUNDLE_INSECURE_REGISTRIES (comma or space separated
  `host[:port]`), which are asked over plain HTTP.
* BUNDLE_REGISTRY_MIRRORS (`name=address`, comma or space separated) sends the requests for a
  registry name to another address, as a registries.conf `location` does for podman: e.g.
  `registry.test:5000=127.0.0.1:35123`. An address written `http://host:port` is plain HTTP.

Every failure is a RegistryProblem with a one-line message naming the registry. What a
registry sends is untrusted: its JSON goes through activate/strict_json.py, an answer is read
up to MAX_BODY bytes, and a tag or token that is not one is refused, never printed or sent on.
"""

from __future__ import annotations

import hashlib
import os
import re
import socket
import ssl
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from http.client import HTTPMessage
from typing import IO, Any

import attrs

from activate import strict_json
from builder.base.errors import BundleError
from builder.images.auth import Credential, credential_for
from builder.stack.names import TAG

DOCKER_HUB = "docker.io"
DOCKER_HUB_API = "registry-1.docker.io"
DOCKER_HUB_ALIASES = {"docker.io", "index.docker.io", "registry-1.docker.io"}
PAGE_SIZE = 1000
MAX_PAGES = 200
TIMEOUT = 20.0
USER_AGENT = "bundle-outdated (quadlet-bundle)"
ACCEPT = "application/json"
# what podman accepts for a tag, the index types first so a multi-arch tag gives its index
MANIFEST_TYPES = (
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
)
MAX_BODY = 16 * 1024 * 1024  # a page of 1000 tags is under 150 KiB
TOKEN = re.compile(r"[\x21-\x7e]{1,8192}")  # it goes into an Authorization header as it is


class RegistryProblem(BundleError):
    """Asking a registry failed: unreachable, no such repository, refused, or nonsense back."""


@attrs.frozen
class Location:
    """Where an image's tags are listed."""

    registry: str  # as the image names it: docker.io, quay.io, registry.test:5000
    repository: str  # library/nginx, prometheus/node-exporter
    base_url: str  # https://registry-1.docker.io, http://127.0.0.1:35123

    @property
    def name(self) -> str:
        return f"{self.registry}/{self.repository}"


def _split_list(value: str | None) -> list[str]:
    return [v for v in re.split(r"[,\s]+", value or "") if v]


def mirrors_from_env(env: Mapping[str, str] | None = None) -> dict[str, str]:
    source = os.environ if env is None else env
    out: dict[str, str] = {}
    for item in _split_list(source.get("BUNDLE_REGISTRY_MIRRORS")):
        name, sep, address = item.partition("=")
        if not sep or not name or not address:
            raise BundleError(
                f"BUNDLE_REGISTRY_MIRRORS: {item!r} is not NAME=ADDRESS "
                "(e.g. registry.test:5000=127.0.0.1:35123)",
                2,
            )
        out[name.lower()] = address
    return out


def insecure_from_env(env: Mapping[str, str] | None = None) -> set[str]:
    source = os.environ if env is None else env
    return {v.lower() for v in _split_list(source.get("BUNDLE_INSECURE_REGISTRIES"))}


def split_image(image: str) -> tuple[str, str]:
    """`image` (without tag) -> (registry, repository), the way podman and docker read it."""
    image = image.split("@", 1)[0]
    first, sep, rest = image.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        registry, repository = first.lower(), rest
    else:
        registry, repository = DOCKER_HUB, image
    if registry in DOCKER_HUB_ALIASES:
        registry = DOCKER_HUB
        if "/" not in repository:
            repository = f"library/{repository}"
    return registry, repository


def locate(
    image: str,
    mirrors: dict[str, str] | None = None,
    insecure: set[str] | None = None,
) -> Location:
    """Where to ask for `image`'s tags; mirrors and insecure default to the environment."""
    mirrors = mirrors_from_env() if mirrors is None else mirrors
    insecure = insecure_from_env() if insecure is None else insecure
    registry, repository = split_image(image)
    address = mirrors.get(registry) or (DOCKER_HUB_API if registry == DOCKER_HUB else registry)
    if "://" in address:
        base = address.rstrip("/")
    else:
        plain = registry in insecure or address.lower() in insecure
        base = f"{'http' if plain else 'https'}://{address}"
    return Location(registry, repository, base)


_CHALLENGE_PARAM = re.compile(r'(\w+)\s*=\s*(?:"([^"]*)"|([^\s,]+))')


def parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    """`Bearer realm="…",service="…",scope="…"` -> ("bearer", {realm, service, scope})."""
    scheme, _, rest = header.strip().partition(" ")
    params = {
        m[1].lower(): m[2] if m[2] is not None else m[3] for m in _CHALLENGE_PARAM.finditer(rest)
    }
    return scheme.lower(), params


def next_link(header: str | None) -> str | None:
    """The target of `Link: <url>; rel="next"`, if any."""
    for part in (header or "").split(","):
        m = re.match(r"\s*<([^>]*)>\s*;(.*)", part)
        if m and re.search(r'rel\s*=\s*"?next"?', m[2]):
            return m[1]
    return None


class RegistryClient:
    """Lists tags. Thread-safe enough for a small pool: each call makes its own requests."""

    def __init__(
        self,
        timeout: float = TIMEOUT,
        page_size: int = PAGE_SIZE,
        credentials: Callable[[str, str], Credential | None] = credential_for,
    ) -> None:
        self.timeout = timeout
        self.page_size = page_size
        self.credentials = credentials
        self._tokens: dict[tuple[str, str, str], str] = {}

    def digest(self, where: Location, tag: str) -> str:
        """`sha256:…` of the manifest (or index) `tag` names: what `IMAGE@DIGEST` pulls."""
        url = f"{where.base_url}/v2/{where.repository}/manifests/{urllib.parse.quote(tag)}"
        accept = ", ".join(MANIFEST_TYPES)
        status, headers, body = self._get(where, url, None, accept=accept)
        if status == 401:
            auth = self._authorization(where, headers.get("www-authenticate", ""))
            status, headers, body = self._get(where, url, auth, accept=accept)
            if status == 401:
                raise RegistryProblem(self._refused(where))
        if status == 404:
            raise RegistryProblem(f"{where.registry} has no tag {tag} of {where.repository}")
        self._check(where, status, body)
        return _manifest_digest(where, tag, headers, body)

    def _refused(self, where: Location) -> str:
        cred = self.credentials(where.registry, where.repository)
        how = f"with the credentials in {cred.source}" if cred else "with an anonymous token"
        return (
            f"{where.registry} refused access to {where.repository} {how}: the repository "
            f"does not exist or is private (podman login {where.registry})"
        )

    def tags(self, where: Location) -> list[str]:
        """Every tag of the repository, in the registry's order (pages followed)."""
        url = f"{where.base_url}/v2/{where.repository}/tags/list?n={self.page_size}"
        seen: set[str] = set()
        tags: list[str] = []
        token: str | None = None
        for _ in range(MAX_PAGES):
            if url in seen:
                break
            seen.add(url)
            status, headers, body = self._get(where, url, token)
            if status == 401:
                token = self._authorization(where, headers.get("www-authenticate", ""))
                status, headers, body = self._get(where, url, token)
                if status == 401:
                    raise RegistryProblem(self._refused(where))
            if status == 400 and not tags and "n=" in url:
                # distribution 3.1 refuses an `n` above its limit: ask for its own page size
                url = url.split("?", 1)[0]
                status, headers, body = self._get(where, url, token)
            self._check(where, status, body)
            tags.extend(_tag_page(where, body))
            link = next_link(headers.get("link"))
            if link is None:
                break
            url = urllib.parse.urljoin(url, link)
        return tags

    def _check(self, where: Location, status: int, body: bytes) -> None:
        if status == 200:
            return
        if status == 404:
            raise RegistryProblem(f"{where.registry} has no repository {where.repository}")
        if status == 403:
            raise RegistryProblem(
                f"{where.registry} refused access to {where.repository} (HTTP 403)"
            )
        detail = _error_detail(body)
        raise RegistryProblem(
            f"{where.registry} answered HTTP {status} for {where.repository}"
            + (f": {detail}" if detail else "")
        )

    def _authorization(self, where: Location, challenge: str) -> str:
        """The `Authorization` header value that answers a 401's challenge."""
        scheme, params = parse_challenge(challenge)
        cred = self.credentials(where.registry, where.repository)
        if scheme == "basic" and cred is not None:
            return f"Basic {cred.basic()}"
        if scheme != "bearer" or "realm" not in params:
            raise RegistryProblem(
                f"{where.registry} wants a login for {where.repository} "
                f"({_printable(challenge.split(' ', 1)[0][:40]) or 'no challenge'}): "
                f"podman login {where.registry}, or set REGISTRY_AUTH_FILE"
            )
        return f"Bearer {self._token(where, params, cred)}"

    def _token(self, where: Location, params: dict[str, str], cred: Credential | None) -> str:
        realm = params["realm"]
        service = params.get("service", "")
        scope = params.get("scope") or f"repository:{where.repository}:pull"
        cached = self._tokens.get((realm, service, scope))
        if cached:
            return cached
        query = urllib.parse.urlencode(
            {k: v for k, v in (("service", service), ("scope", scope)) if v}
        )
        url = realm + ("&" if "?" in realm else "?") + query
        basic = f"Basic {cred.basic()}" if cred else None
        status, _, body = self._get(where, url, basic, what="token server")
        if status != 200:
            whose = f"the credentials in {cred.source}" if cred else "an anonymous token"
            raise RegistryProblem(
                f"{where.registry}: the token server {urllib.parse.urlsplit(realm).netloc} "
                f"refused {whose} for {where.repository} (HTTP {status})"
            )
        server = f"{where.registry}: the token server {urllib.parse.urlsplit(realm).netloc}"
        try:
            doc = strict_json.loads(body, f"{server} sent an answer", "")
        except strict_json.JsonRefused as e:
            raise RegistryProblem(e.message) from None
        token = doc.get("token") or doc.get("access_token")
        if not isinstance(token, str) or not token:
            raise RegistryProblem(f"{server} sent no token")
        if not TOKEN.fullmatch(token):
            raise RegistryProblem(f"{server} sent a token with spaces or control characters")
        self._tokens[(realm, service, scope)] = token
        return token

    def _get(
        self,
        where: Location,
        url: str,
        authorization: str | None,
        what: str = "registry",
        accept: str = ACCEPT,
    ) -> tuple[int, dict[str, str], bytes]:
        headers = {"Accept": accept, "User-Agent": USER_AGENT}
        if authorization:
            headers["Authorization"] = authorization
        req = urllib.request.Request(url, headers=headers)
        host = urllib.parse.urlsplit(url).netloc
        label = where.registry if what == "registry" else f"{where.registry}: the {what} {host}"
        via = "" if host == where.registry or what != "registry" else f" (at {host})"
        try:
            with _opener.open(req, timeout=self.timeout) as resp:
                return resp.status, _lower(resp.headers.items()), _read(resp, f"{label}{via}")
        except urllib.error.HTTPError as e:
            with e:
                return e.code, _lower(e.headers.items()), _read(e, f"{label}{via}")
        except TimeoutError:
            raise RegistryProblem(
                f"{label}{via} did not answer within {self.timeout:g} s"
            ) from None
        except urllib.error.URLError as e:
            reason: Any = e.reason
            if isinstance(reason, ssl.SSLError):
                raise RegistryProblem(
                    f"{label}{via}: TLS failed ({_reason(reason)}); a plain-HTTP registry "
                    "must be listed in BUNDLE_INSECURE_REGISTRIES"
                ) from None
            if isinstance(reason, TimeoutError):
                raise RegistryProblem(
                    f"{label}{via} did not answer within {self.timeout:g} s"
                ) from None
            raise RegistryProblem(f"{label}{via} is unreachable: {_reason(reason)}") from None
        except (ConnectionError, OSError) as e:
            raise RegistryProblem(f"{label}{via} is unreachable: {_reason(e)}") from None


class _RedirectWithoutToken(urllib.request.HTTPRedirectHandler):
    """Follow redirects (some registries send tag pages elsewhere), never with our token."""

    def redirect_request(
        self,
        req: urllib.request.Request,
        fp: IO[bytes],
        code: int,
        msg: str,
        headers: HTTPMessage,
        newurl: str,
    ) -> urllib.request.Request | None:
        new = super().redirect_request(req, fp, code, msg, headers, newurl)
        if (
            new is not None
            and urllib.parse.urlsplit(newurl).netloc != urllib.parse.urlsplit(req.full_url).netloc
        ):
            new.remove_header("Authorization")
        return new


_opener = urllib.request.build_opener(_RedirectWithoutToken())


def _lower(items: Any) -> dict[str, str]:
    out: dict[str, str] = {}
    for k, v in items:
        k = k.lower()
        out[k] = f"{out[k]}, {v}" if k in out else v
    return out


def _reason(e: Any) -> str:
    if isinstance(e, ssl.SSLError):
        return getattr(e, "reason", None) or str(e)
    if isinstance(e, socket.gaierror):
        return "unknown host name"
    if isinstance(e, ConnectionRefusedError):
        return "connection refused"
    if isinstance(e, OSError) and e.strerror:
        return e.strerror.lower()
    return str(e)


def _read(resp: Any, who: str) -> bytes:
    body: bytes = resp.read(MAX_BODY + 1)
    if len(body) > MAX_BODY:
        raise RegistryProblem(f"{who} sent an answer over {MAX_BODY >> 20} MiB")
    return body


def _tag_page(where: Location, body: bytes) -> list[str]:
    """The tags of one page of a tag list; a page that is not one is refused in one line."""
    said = f"{where.registry} sent a tag list for {where.repository}"
    try:
        page = strict_json.loads(body, said, "")
    except strict_json.JsonRefused as e:
        raise RegistryProblem(e.message) from None
    tags = page.get("tags") or []
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise RegistryProblem(f'{said}: its "tags" are not a list of strings')
    for tag in tags:
        if not TAG.fullmatch(tag):
            raise RegistryProblem(f"{said}: {_printable(tag)[:80]!r} is not a tag name")
    return tags


def _printable(text: str) -> str:
    """A registry's text as one terminal-safe line: control characters become '?'."""
    return "".join(c if c.isprintable() else "?" for c in text)


def _error_detail(body: bytes) -> str:
    try:
        doc = strict_json.loads(body, "error", "")
        errors = doc.get("errors") or []
        detail = "; ".join(str(e.get("message") or e.get("code")) for e in errors)
    except (strict_json.JsonRefused, AttributeError, TypeError):
        return ""
    return _printable(detail[:200])


def _manifest_digest(where: Location, tag: str, headers: dict[str, str], body: bytes) -> str:
    """The digest of a manifest answer, refused unless it is a manifest podman would pull."""
    said = f"{where.registry} sent a manifest for {where.repository}:{tag}"
    try:
        doc = strict_json.loads(body, said, "")
    except strict_json.JsonRefused as e:
        raise RegistryProblem(e.message) from None
    kind = doc.get("mediaType") or headers.get("content-type", "").split(";")[0].strip()
    if doc.get("schemaVersion") != 2 or kind not in MANIFEST_TYPES:
        raise RegistryProblem(f"{said} that is not an image manifest or index (schema 2)")
    # the digest is of the bytes as served, which is what podman verifies after a pull
    digest = "sha256:" + hashlib.sha256(body).hexdigest()
    claimed = headers.get("docker-content-digest")
    if claimed and claimed != digest:
        raise RegistryProblem(f"{said} whose bytes do not match its Docker-Content-Digest")
    return digest
