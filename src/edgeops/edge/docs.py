"""The agent's API docs, ``/docs`` (Swagger UI) and ``/redoc`` (ReDoc), working without internet.

FastAPI's own pages load Swagger UI and ReDoc from public CDNs: on a device without internet they
stay blank. Here both come from files installed with the package (``edge/static/``, see its
README for versions, licenses and how to update them), under ``/docs/assets/<digest>/<name>``:
the digest of the files is in the address, so they are cached for a year and a new release is
fetched anew. The pages carry a Content-Security-Policy that lets them load nothing from another
host, whatever the bundled scripts try (ReDoc's sidebar shows a logo from its vendor's CDN).

    add_routes(app)   # after FastAPI(docs_url=None, redoc_url=None)
"""

from __future__ import annotations

import hashlib
from functools import cache
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from starlette.responses import FileResponse, Response

from edgeops.edge.errors import ApiError

STATIC = Path(__file__).parent / "static"
#: name in the address -> (file under static/, media type)
ASSETS = {
    "swagger-ui-bundle.js": ("swagger-ui/swagger-ui-bundle.js", "text/javascript"),
    "swagger-ui.css": ("swagger-ui/swagger-ui.css", "text/css"),
    "redoc.standalone.js": ("redoc/redoc.standalone.js", "text/javascript"),
    "favicon.png": ("swagger-ui/favicon-32x32.png", "image/png"),
}
ASSET_CACHE = "public, max-age=31536000, immutable"
# the pages themselves: same origin only (ReDoc's search runs in a blob: worker, its styles and
# both pages' start-up scripts are inline; Swagger UI and ReDoc show images as data: URIs)
PAGE_CSP = (
    "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data: blob:; font-src 'self' data:; worker-src 'self' blob:; "
    "connect-src 'self'; frame-ancestors 'self'; base-uri 'self'; form-action 'self'"
)
PAGE_HEADERS = {"Content-Security-Policy": PAGE_CSP, "Cache-Control": "no-cache"}
# Swagger UI: no online validator badge (it would send the spec's address to swagger.io)
SWAGGER_PARAMETERS = {"validatorUrl": None}


@cache
def assets_digest() -> str:
    """A short digest of every asset: it changes whenever one of the files does."""
    h = hashlib.sha256()
    for name in sorted(ASSETS):
        h.update(name.encode() + b"\0" + (STATIC / ASSETS[name][0]).read_bytes())
    return h.hexdigest()[:16]


class DocsRoutes:
    """The handlers of ``/docs``, ``/redoc`` and their assets."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app

    def _url(self, request: Request, name: str) -> str:
        return f"{request.scope.get('root_path', '')}/docs/assets/{assets_digest()}/{name}"

    async def swagger_ui(self, request: Request) -> Any:
        """Swagger UI on this agent's OpenAPI document."""
        page = get_swagger_ui_html(
            openapi_url=request.scope.get("root_path", "") + self.app.openapi_url,
            title=f"{self.app.title} - Swagger UI",
            swagger_js_url=self._url(request, "swagger-ui-bundle.js"),
            swagger_css_url=self._url(request, "swagger-ui.css"),
            swagger_favicon_url=self._url(request, "favicon.png"),
            swagger_ui_parameters=SWAGGER_PARAMETERS,
        )
        page.headers.update(PAGE_HEADERS)
        return page

    async def redoc(self, request: Request) -> Any:
        """ReDoc on this agent's OpenAPI document (no web fonts: the system's)."""
        page = get_redoc_html(
            openapi_url=request.scope.get("root_path", "") + self.app.openapi_url,
            title=f"{self.app.title} - ReDoc",
            redoc_js_url=self._url(request, "redoc.standalone.js"),
            redoc_favicon_url=self._url(request, "favicon.png"),
            with_google_fonts=False,
        )
        page.headers.update(PAGE_HEADERS)
        return page

    async def asset(self, digest: str, name: str) -> Response:
        """One of the page's scripts, styles or icon; cached for good (its address changes)."""
        if name not in ASSETS or digest != assets_digest():
            raise ApiError(404, "not_found", "no such docs asset (reload the page)")
        path, media_type = ASSETS[name]
        return FileResponse(
            STATIC / path, media_type=media_type, headers={"Cache-Control": ASSET_CACHE}
        )


def add_routes(app: FastAPI) -> None:
    """Register ``GET /docs``, ``GET /redoc`` and ``GET /docs/assets/{digest}/{name}`` (none of
    them in the OpenAPI document, none needing a token)."""
    routes = DocsRoutes(app)
    app.add_api_route("/docs", routes.swagger_ui, methods=["GET"], include_in_schema=False)
    app.add_api_route("/redoc", routes.redoc, methods=["GET"], include_in_schema=False)
    app.add_api_route(
        "/docs/assets/{digest}/{name}", routes.asset, methods=["GET"], include_in_schema=False
    )
