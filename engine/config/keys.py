"""Which API key a backend sends, by the convention of OpenAI-compatible tools.

`api_key_env: auto` (the default): $GRISTMILL_API_KEY, else $OPENAI_API_KEY, but the OpenAI key
only to OpenAI's own API or a server on this machine, so it never leaks to a third party; for
another host it is not sent and a warning says the line to add. A variable's name: that
variable. `null`: no key. The key is read from the environment when a backend is built and is
held only in its HTTP headers: never in a config, a run directory, a log or an error."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Mapping
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from gristmill.config.backend import BackendConfig

BY_CONVENTION = "auto"
OWN_KEY = "GRISTMILL_API_KEY"
OPENAI_KEY = "OPENAI_API_KEY"
OPENAI_HOSTS = frozenset({"api.openai.com"})


@dataclass(frozen=True)
class ApiKey:
    value: str | None = field(default=None, repr=False)  # never in a repr or a traceback
    variable: str | None = None  # where it came from, for messages
    warning: str | None = None  # a key that was set but is not sent, and what to change


def trusted_with_openai_key(url: str) -> bool:
    """OpenAI's own API, or a server on this machine (loopback)."""
    host = (urlsplit(url).hostname or "").lower()
    if host in OPENAI_HOSTS or host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def api_key(backend: str, variable: str | None, urls: list[str],
            environ: Mapping[str, str]) -> ApiKey:
    """The key `backend` sends to `urls`, given its `api_key_env` (`variable`)."""
    if variable is None:
        return ApiKey()
    if variable != BY_CONVENTION:
        return ApiKey(environ.get(variable) or None, variable)
    if environ.get(OWN_KEY):
        return ApiKey(environ[OWN_KEY], OWN_KEY)
    if not environ.get(OPENAI_KEY):
        return ApiKey()
    others = sorted({urlsplit(u).hostname or u for u in urls if not trusted_with_openai_key(u)})
    if others:
        return ApiKey(warning=f"backend {backend!r}: ${OPENAI_KEY} is set but not sent to "
                              f"{', '.join(others)} (not OpenAI's API, not this machine); to "
                              f"send it, add `api_key_env: {OPENAI_KEY}` to the backend")
    return ApiKey(environ[OPENAI_KEY], OPENAI_KEY)


def auth_headers(key: ApiKey, style: str) -> dict[str, str]:
    """The header that carries the key: `Authorization: Bearer` or Azure's `api-key`."""
    if key.value is None:
        return {}
    return {"api-key": key.value} if style == "api-key" else \
        {"Authorization": f"Bearer {key.value}"}


def key_warnings(backends: Mapping[str, BackendConfig], environ: Mapping[str, str]) -> list[str]:
    """The warnings of `api_key` for every backend of a config (`config.backends`)."""
    return [w for name, b in backends.items()
            if (w := api_key(name, b.api_key_env, b.base_urls, environ).warning)]
