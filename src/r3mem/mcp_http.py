"""`r3mem mcp --transport http`: the MCP tools over streamable HTTP, behind an r3mem API key.

The SDK's own bearer-token hooks do the checking (`MCPServer(token_verifier=, auth=)`): every
request must carry `Authorization: Bearer <key>`, a key `r3mem key create` made whose scope holds
the server's namespace; anything else is 401 before a tool runs. There is no OAuth server behind
it: the key is a static secret the client is configured with, so `AuthSettings` names this server
itself as the issuer. Loopback by default, with the SDK's DNS-rebinding protection.
"""

from __future__ import annotations

import sys
from typing import Any

from mcp.server.auth.provider import AccessToken
from mcp.server.auth.settings import AuthSettings
from pydantic import AnyHttpUrl

from r3mem.errors import AccessDenied
from r3mem.service.keys import authenticate
from r3mem.service.server import is_loopback
from r3mem.store.backend import StoreBackend
from r3mem.store.namespace import Namespace

MCP_PATH = "/mcp"


class ApiKeyVerifier:
    """The SDK's `TokenVerifier`: a bearer token is good when it is a stored key whose scope holds
    `namespace` (the tools' namespace, so a key for another user cannot reach these memories)."""

    def __init__(self, backend: StoreBackend, namespace: Namespace) -> None:
        self.backend, self.namespace = backend, namespace

    async def verify_token(self, token: str) -> AccessToken | None:
        try:
            key = authenticate(self.backend, token)
        except AccessDenied:
            return None
        if not key.scope.contains(self.namespace):
            return None
        return AccessToken(token=token, client_id=key.label or key.key_hash[:12], scopes=[])


def auth_options(backend: StoreBackend, namespace: Namespace, host: str, port: int) -> dict[str, Any]:
    """`MCPServer` keyword arguments that make every HTTP request present an r3mem API key."""
    url = f"http://{host}:{port}"
    return {"token_verifier": ApiKeyVerifier(backend, namespace),
            "auth": AuthSettings(issuer_url=AnyHttpUrl(url), resource_server_url=AnyHttpUrl(url + MCP_PATH))}


def warn_if_exposed(host: str) -> None:
    if not is_loopback(host):
        print(f"r3mem: MCP listening on {host}: reachable from other machines; every request still needs "
              "an API key", file=sys.stderr)
