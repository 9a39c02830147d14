"""/docs and /redoc served from this machine, and the bearer scheme declared, so "Try it out" works.

FastAPI's default pages load Swagger UI and ReDoc from a CDN: blank on an
air-gapped site. Their JavaScript and CSS come here from an installed
package instead (`fastapi-offline` ships both bundles; only its static files
are used), under `/docs-assets/`. Authentication is a plain header dependency
(see `context.ApiContext.principal`), which FastAPI cannot see, so the
document gets its security scheme here: every operation documented with a
401 requires the `bearer` scheme, and Swagger UI's Authorize button sends it.
"""

from importlib.resources import files
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

ASSETS = "/docs-assets"
SCHEME = {"bearer": {"type": "http", "scheme": "bearer",
                     "description": "an API token from DRIFTLINE_API_TOKENS_FILE (sent as `Authorization: Bearer ...`)"}}


def serve_docs(app: FastAPI) -> None:
    """Mount the assets and the two pages; the app must be made with `docs_url=None, redoc_url=None`."""
    app.mount(ASSETS, StaticFiles(directory=str(files("fastapi_offline") / "static")), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    def swagger() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url="/openapi.json", title=f"{app.title} - API",
                                   swagger_js_url=f"{ASSETS}/swagger-ui-bundle.js",
                                   swagger_css_url=f"{ASSETS}/swagger-ui.css",
                                   swagger_favicon_url=f"{ASSETS}/favicon.png",
                                   swagger_ui_parameters={"persistAuthorization": True})

    @app.get("/redoc", include_in_schema=False)
    def redoc() -> HTMLResponse:
        return get_redoc_html(openapi_url="/openapi.json", title=f"{app.title} - API reference",
                              redoc_js_url=f"{ASSETS}/redoc.standalone.js", redoc_favicon_url=f"{ASSETS}/favicon.png",
                              with_google_fonts=False)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            doc = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
            doc.setdefault("components", {})["securitySchemes"] = SCHEME
            for item in doc["paths"].values():
                for operation in item.values():
                    if "401" in operation.get("responses", {}):
                        operation["security"] = [{"bearer": []}]
            app.openapi_schema = doc
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
