"""/docs from the package: Swagger UI's assets are vendored (web/static/swagger, from the npm
package swagger-ui-dist, with its licence), so the explorer works without reaching a CDN."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from medialayer.api.routes_ui import WEB

ASSETS = "/docs-assets"


def install(app: FastAPI) -> None:
    """Serve /docs with the package's Swagger UI (the app is built with docs_url=None)."""
    app.mount(ASSETS, StaticFiles(directory=str(WEB / "static" / "swagger")), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url=app.openapi_url or "/openapi.json",
                                   title=f"{app.title} API",
                                   swagger_js_url=f"{ASSETS}/swagger-ui-bundle.js",
                                   swagger_css_url=f"{ASSETS}/swagger-ui.css",
                                   swagger_favicon_url=f"{ASSETS}/favicon-32x32.png")
