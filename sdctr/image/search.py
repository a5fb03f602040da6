"""`sdctr search [REGISTRY/]TERM`: Docker Hub's search API for docker.io; for any other registry,
which has no search API in the distribution spec, its repository list (GET /v2/_catalog) filtered
by the term, so only the names are known.

    GET https://index.docker.io/v1/search?q=TERM&n=LIMIT
    {"num_results": 2, "query": "TERM", "results": [{"name": "nginx", "description": "...",
     "star_count": 19000, "is_official": true, "is_automated": false}, ...]}
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from typing import Any

from sdctr import config
from sdctr.image import auth
from sdctr.image import store as images
from sdctr.log import SdctrError
from sdctr.paths import Paths
from sdctr.record import Record

HUB_SEARCH = "https://index.docker.io/v1/search"
DEFAULT_LIMIT = 25
HUB_MAX_LIMIT = 100  # what the Hub serves in one page, and what docker search allows
DESCRIPTION_WIDTH = 45  # as docker search truncates
HEADER = ["NAME", "DESCRIPTION", "STARS", "OFFICIAL"]


class Result(Record):
    name: str
    description: str = ""
    stars: int | None = None  # None: the registry does not say (a catalog)
    official: bool | None = None

    def row(self, *, truncate: bool = True) -> list[str]:
        desc = " ".join(self.description.split())  # descriptions carry newlines and tabs
        if truncate and len(desc) > DESCRIPTION_WIDTH:
            desc = desc[: DESCRIPTION_WIDTH - 1] + "…"
        stars = "" if self.stars is None else str(self.stars)
        return [self.name, desc, stars, "[OK]" if self.official else ""]

    def as_json(self) -> dict[str, Any]:
        """The keys of `docker search --format '{{json .}}'`."""
        return {"Name": self.name, "Description": self.description, "StarCount": self.stars,
                "IsOfficial": self.official}


def split_term(text: str) -> tuple[str, str]:
    """``REGISTRY/TERM`` or ``TERM`` (Docker Hub): (registry domain, term)."""
    first, sep, rest = text.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        return auth.registry_domain(first), rest
    return images.DEFAULT_DOMAIN, text


def search(paths: Paths, text: str, *, limit: int = DEFAULT_LIMIT,
           registries: config.Registries | None = None) -> list[Result]:
    if limit < 1:
        raise SdctrError(f"--limit {limit}: give a positive number of results")
    domain, term = split_term(text)
    if domain == images.DEFAULT_DOMAIN:
        return search_hub(term, limit)
    from sdctr.image import registry  # httpx: only for the verbs that go out

    wanted = term.lower()
    names = (n for n in registry.catalog(paths, domain, registries) if wanted in n.lower())
    return [Result(f"{domain}/{n}") for n in itertools.islice(names, limit)]


def search_hub(term: str, limit: int) -> list[Result]:
    import httpx

    if not term:
        raise SdctrError("search needs a term", hint="e.g. sdctr search nginx")
    if limit > HUB_MAX_LIMIT:
        raise SdctrError(f"--limit {limit} is more than Docker Hub serves ({HUB_MAX_LIMIT})")
    try:
        from sdctr.image.registry import http_client

        with http_client() as client:
            resp = client.get(HUB_SEARCH, params={"q": term, "n": str(limit)})
            resp.raise_for_status()
            doc = resp.json()
    except httpx.HTTPStatusError as e:
        raise SdctrError(f"Docker Hub answered {e.response.status_code} to the search for {term!r}") from None
    except httpx.HTTPError as e:
        raise SdctrError(f"cannot reach Docker Hub's search ({HUB_SEARCH}): {e}") from None
    except ValueError:
        raise SdctrError("Docker Hub's search answered something that is not JSON") from None
    return parse_hub(doc)[:limit]


def parse_hub(doc: Any) -> list[Result]:
    """Docker Hub's answer as results; entries it cannot read are refused, not guessed at."""
    entries = doc.get("results") if isinstance(doc, Mapping) else None
    if not isinstance(entries, list):
        raise SdctrError("Docker Hub's search answered without a result list")
    return [_hub_result(e) for e in entries]


def _hub_result(entry: Any) -> Result:
    if not isinstance(entry, Mapping) or not isinstance(entry.get("name"), str):
        raise SdctrError(f"Docker Hub's search answered an entry without a name: {entry!r:.80}")
    stars = entry.get("star_count")
    return Result(name=entry["name"], description=str(entry.get("description") or ""),
                  stars=stars if isinstance(stars, int) else 0, official=bool(entry.get("is_official")))
