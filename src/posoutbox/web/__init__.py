"""The operators' web console: the work of M3's CRS610, OPS500, OPS030, OPS630
and OPS690 screens as server-rendered pages, served by ``posoutbox serve`` at /.

``create_app`` mounts it with ``app.include_router(web.router)``. The router is
imported on first use, so that the command line can import ``web.options``
without loading the web stack.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fastapi import APIRouter

    router: APIRouter


def __getattr__(name: str) -> Any:
    if name == "router":
        from posoutbox.web.console import router

        return router
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
