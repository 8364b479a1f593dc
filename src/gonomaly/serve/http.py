"""The HTTP plumbing of the service, apart from its endpoints: refusals as JSON, the request
body under a size limit, the images of a request, bearer authentication and request metrics
(plain ASGI middleware, so streaming and the lifespan pass through untouched)."""

from __future__ import annotations

import base64
import binascii
import hmac
import time

from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import JSONResponse

from gonomaly.serve.metrics import ServiceMetrics

MAX_FILES = 1000  # files in one multipart request
OPEN_PATHS = ("/healthz",)  # answered without a token: load balancers probe it


class RequestRefused(Exception):
    """A request the service refuses: ``status`` (4xx), ``kind`` (counted in the metrics) and
    a one-line ``message`` naming the problem."""

    def __init__(self, status: int, kind: str, message: str):
        super().__init__(message)
        self.status, self.kind = status, kind


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


async def read_body(request: Request, limit: int) -> bytes:
    """The whole body, refused (413) as soon as it is known to exceed ``limit`` bytes: from
    Content-Length before reading anything, else while it streams in."""
    too_large = RequestRefused(413, "body_too_large", f"request body over the limit of {limit} bytes (--max-body-mb)")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise too_large
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)


async def request_images(request: Request, body: bytes, limit: int) -> list[tuple[str, bytes]]:
    """``(name, bytes)`` per image: each file of a multipart form (named by its file name), or
    the raw body as one image (named by ``?name=``, else ``image``)."""
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("application/x-www-form-urlencoded"):
        raise RequestRefused(400, "no_image", "a form without files: send each image as a multipart file field, "
                                              "or one image as the raw body")
    if not content_type.startswith("multipart/form-data"):
        if not body:
            raise RequestRefused(400, "empty_body", "empty request body: send one image as the body, "
                                                    "or images as multipart files")
        return [(request.query_params.get("name") or "image", body)]

    async def replay() -> dict:
        return {"type": "http.request", "body": body, "more_body": False}

    try:
        form = await Request(request.scope, replay).form(max_files=MAX_FILES, max_part_size=limit)
    except Exception as exc:  # noqa: BLE001 - the multipart parser's errors vary by version
        raise RequestRefused(400, "bad_multipart", f"malformed multipart body ({exc})") from None
    try:
        images = [(upload.filename or field, await upload.read())
                  for field, upload in form.multi_items() if isinstance(upload, UploadFile)]
    finally:
        await form.close()
    if not images:
        raise RequestRefused(400, "no_image", "no file in the multipart body: send each image as a file field")
    return images


def token_matches(authorization: str, token: str) -> bool:
    """``Bearer TOKEN``, or ``Basic`` with TOKEN as the password (what a browser sends after
    asking for it on the web page), compared in constant time."""
    scheme, _, credentials = authorization.partition(" ")
    if scheme.lower() == "basic":
        try:
            credentials = base64.b64decode(credentials, validate=True).decode().partition(":")[2]
        except (binascii.Error, UnicodeDecodeError):
            return False
    elif scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(credentials.strip().encode(), token.encode())


class TokenAuthMiddleware:
    """Every path except ``OPEN_PATHS`` needs the token (see ``token_matches``); the web page's
    refusal asks the browser for it (Basic), the API's asks for a bearer token."""

    def __init__(self, app, token: str):
        self.app, self.token = app, token

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS:
            return await self.app(scope, receive, send)
        header = dict(scope["headers"]).get(b"authorization", b"").decode("latin-1")
        if token_matches(header, self.token):
            return await self.app(scope, receive, send)
        challenge = 'Basic realm="gonomaly"' if scope["path"] == "/" else 'Bearer realm="gonomaly"'
        scope.setdefault("state", {})["error_kind"] = "unauthorized"
        response = error_response(401, "missing or wrong token: send 'Authorization: Bearer TOKEN'",
                                  {"WWW-Authenticate": challenge})
        await response(scope, receive, send)


class RequestMetricsMiddleware:
    """Counts each request by endpoint and status, its latency, and its refusal's kind."""

    def __init__(self, app, metrics: ServiceMetrics, endpoints: tuple[str, ...]):
        self.app, self.metrics, self.endpoints = app, metrics, endpoints

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start, status = time.perf_counter(), [500]

        async def send_and_note(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            endpoint = scope["path"] if scope["path"] in self.endpoints else "other"
            self.metrics.observe_request(endpoint, status[0], time.perf_counter() - start)
            kind = scope.get("state", {}).get("error_kind") or ("internal" if status[0] >= 500 else None)
            if kind is not None:
                self.metrics.count_error(kind)
