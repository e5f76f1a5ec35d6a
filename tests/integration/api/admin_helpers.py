"""Helpers of the admin UI tests: a browser-like httpx client (cookies, the CSRF token of the last
page, forms) on a real server from api_helpers, and the page's visible text."""

from __future__ import annotations

import html
import re
from typing import Any

import httpx
from api_helpers import Server

_CSRF = re.compile(r'name="csrf" value="([^"]+)"')
_TAGS = re.compile(r"<(script|style)\b.*?</\1>|<[^>]+>", re.S)
_BEFORE_PUNCTUATION = re.compile(r" ([,.;:)])")


def text(page: str) -> str:
    """What a reader sees of an HTML page: tags removed, entities decoded, spaces collapsed."""
    spaced = " ".join(html.unescape(_TAGS.sub(" ", page)).split())
    return _BEFORE_PUNCTUATION.sub(r"\1", spaced)  # "<time>1 May</time>," reads "1 May,"


class Staff:
    """One member of staff's browser session on the admin UI of `server`."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.client: httpx.Client = server.client(None, follow_redirects=False)
        self.last: httpx.Response | None = None

    def login(self, secret: str, next: str = "/") -> httpx.Response:
        """Submit the sign-in form."""
        return self.client.post("/admin/login", data={"token": secret, "next": next})

    def signed_in(self, scope: str = "admin") -> Staff:
        """Sign in with the server's token of this scope; fails the test if refused."""
        response = self.login(self.server.tokens[scope])
        assert response.status_code == 303, response.text
        return self

    def get(self, path: str, **params: Any) -> httpx.Response:
        """GET an admin page (remembering it for its CSRF token)."""
        response = self.client.get(f"/admin{path}", params=params)
        self.last = response
        return response

    def page(self, path: str, **params: Any) -> str:
        """The visible text of an admin page that must answer 200."""
        response = self.get(path, **params)
        assert response.status_code == 200, (response.status_code, response.text[:3000])
        return text(response.text)

    def csrf(self) -> str:
        """The CSRF token in the last page (fetching the dashboard if none yet)."""
        if self.last is None or not _CSRF.search(self.last.text):
            self.get("/")
        assert self.last is not None
        found = _CSRF.search(self.last.text)
        assert found is not None, self.last.text[:2000]
        return found.group(1)

    def post(self, path: str, *, csrf: str | None = None, **form: str) -> httpx.Response:
        """Submit a form (with this session's CSRF token unless `csrf` is given)."""
        data = {"csrf": self.csrf() if csrf is None else csrf, **form}
        response = self.client.post(f"/admin{path}", data=data)
        if response.status_code != 303:
            self.last = response
        return response

    def act(self, account: str, action: str, **form: str) -> httpx.Response:
        """Carry out an account action; on success, the account page it redirects to."""
        form.setdefault("reason", f"{action} in the admin UI test")
        response = self.post(f"/accounts/{account}/actions/{action}", **form)
        if response.status_code == 303:
            location = response.headers["location"]
            assert location == f"/admin/accounts/{account}", location
            return self.get(f"/accounts/{account}")
        return response
