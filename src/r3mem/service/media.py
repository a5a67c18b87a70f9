"""`JSONBodies`: a body sent to a JSON route as anything but JSON is 415, before it is read.

FastAPI reads a body whose `Content-Type` is not JSON as raw bytes and then fails to
validate them (422 "Input should be a valid dictionary"), which hides the real mistake. A
body without a `Content-Type` is still read as JSON, as FastAPI does. Paths in `exempt` (the
archive import) check their own media types.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from r3mem.service.errors import error_response

_WITH_BODY = frozenset({"POST", "PUT", "PATCH"})


def is_json(content_type: str) -> bool:
    media = content_type.split(";")[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


class JSONBodies:
    def __init__(self, app: ASGIApp, exempt: frozenset[str] = frozenset()) -> None:
        self.app, self.exempt = app, exempt

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] in _WITH_BODY and scope["path"] not in self.exempt:
            content_type = next((v.decode("latin-1") for k, v in scope.get("headers", ()) if k == b"content-type"),
                                None)
            if content_type is not None and not is_json(content_type):
                message = f"send the body as JSON with Content-Type application/json, not {content_type[:80]!r}"
                await error_response(415, message)(scope, receive, send)
                return
        await self.app(scope, receive, send)
