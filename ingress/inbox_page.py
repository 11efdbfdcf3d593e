"""GET /inbox: the clinic's inbox, one static page that calls the operator API.

The page holds no secret of its own: the operator pastes their token, which it keeps in the
browser's localStorage and sends as a bearer token; every rule is the API's.
"""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

INBOX_PAGE = Path(__file__).parent / "inbox_page.html"


async def page(request: web.Request) -> web.Response:
    # No caching and no framing: the page shows customers' messages once a token is in.
    return web.Response(
        text=INBOX_PAGE.read_text(),
        content_type="text/html",
        headers={
            "Cache-Control": "no-store",
            "X-Frame-Options": "DENY",
            # blob: shows a media file fetched with the token; https: follows a media link to
            # the Supabase bucket's signed URL.
            "Content-Security-Policy": "default-src 'self'; script-src 'unsafe-inline' 'self'; "
            "style-src 'unsafe-inline' 'self'; img-src 'self' blob:; "
            "media-src 'self' blob:; connect-src 'self' https:; "
            "frame-ancestors 'none'",
        },
    )


def add_routes(app: web.Application) -> None:
    app.router.add_get("/inbox", page)
