"""A local web server on 127.0.0.1 for the download tests: files with Range support, a fake civitai API, a
fake Hugging Face hub, and switches for the failures a real download meets (a dropped connection, a 401).

It speaks plain HTTP through the standard library, so the code under test uses its real network path.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlsplit

COMMIT = "0123456789abcdef0123456789abcdef01234567"


@dataclass
class Served:
    """One file the server hands out."""

    data: bytes
    drop_after: int | None = None
    """Close the connection after this many bytes, once (the next request gets the rest)."""
    token: str | None = None
    """Answer 401 unless ``Authorization: Bearer <token>`` comes with the request."""
    content_type: str = "application/octet-stream"
    disposition: str | None = None
    delay: float = 0.0
    """Seconds to wait after each 64 KiB sent (a slow link, so a test can interrupt mid-download)."""


@dataclass
class FakeWeb:
    """Routes and a log of every request (method, path, headers) the tests can assert on."""

    files: dict[str, Served] = field(default_factory=dict)
    json: dict[str, Any] = field(default_factory=dict)
    redirects: dict[str, str] = field(default_factory=dict)
    status: dict[str, int] = field(default_factory=dict)
    """Paths answered with this status and no body (e.g. 503: the API is down)."""
    log: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)
    port: int = 0

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def requests(self, path: str) -> list[dict[str, str]]:
        return [headers for _, logged, headers in self.log if logged == path]

    def add_hub_file(self, repo: str, filename: str, data: bytes, etag: str | None = None) -> None:
        """Serve `data` as `filename` of hub repo `repo` (LFS-style: the ETag is the sha256)."""
        self.files[f"/{repo}/resolve/main/{filename}"] = Served(data)
        self.json.setdefault(f"hub:{repo}", {})[filename] = etag or hashlib.sha256(data).hexdigest()


def _handler(web: FakeWeb) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:  # quiet
            pass

        def do_HEAD(self) -> None:  # noqa: N802
            self._quietly(body=False)

        def do_GET(self) -> None:  # noqa: N802
            self._quietly(body=True)

        def _quietly(self, body: bool) -> None:
            try:
                self._answer(body)
            except (BrokenPipeError, ConnectionResetError):  # the client hung up early (it may, to resume)
                self.close_connection = True

        def _answer(self, body: bool) -> None:
            path = unquote(urlsplit(self.path).path).replace(f"/{COMMIT}", "/main")  # the hub's commit = main
            web.log.append((self.command, path, dict(self.headers)))
            if path in web.status:
                return self._send(web.status[path], b"", {"Content-Type": "text/plain"}, body)
            if path in web.redirects:
                return self._send(302, b"", {"Location": web.redirects[path]})
            if path in web.json:
                return self._send(200, json.dumps(web.json[path]).encode(), {"Content-Type": "application/json"}, body)
            hub = self._hub_api(path)
            if hub is not None:
                return self._send(200, json.dumps(hub).encode(), {"Content-Type": "application/json"}, body)
            served = web.files.get(path)
            if served is None and "/resolve/" in path:  # what the hub says for a repo that isn't (or is private)
                return self._send(401, b"", {"X-Error-Code": "RepoNotFound", "Content-Type": "text/plain"}, body)
            if served is None:
                return self._send(404, b"not found", {"Content-Type": "text/plain"}, body)
            if served.token and self.headers.get("Authorization") != f"Bearer {served.token}":
                return self._send(401, b"unauthorized", {"Content-Type": "text/plain"}, body)
            self._send_file(served, path, body)

        def _hub_api(self, path: str) -> Any:
            """``/api/models/REPO/revision/REV`` and ``/api/models/REPO/tree/REV``, from the files added per repo."""
            parts = path.split("/")
            if len(parts) < 7 or parts[1:3] != ["api", "models"] or f"hub:{parts[3]}/{parts[4]}" not in web.json:
                return None
            repo = f"{parts[3]}/{parts[4]}"
            files = web.json[f"hub:{repo}"]
            sizes = {name: len(web.files[f"/{repo}/resolve/main/{name}"].data) for name in files}
            entries = [
                {
                    "type": "file",
                    "path": name,
                    "oid": etag[:40],
                    "size": sizes[name],
                    "lfs": {"oid": etag, "size": sizes[name], "pointerSize": 134},
                }
                for name, etag in files.items()
            ]
            if parts[5] == "tree":
                return entries
            return {"id": repo, "sha": COMMIT, "siblings": [{"rfilename": e["path"]} for e in entries]}

        def _send_file(self, served: Served, path: str, body: bool) -> None:
            data, start, status = served.data, 0, 200
            headers = {"Content-Type": served.content_type, "Accept-Ranges": "bytes"}
            if served.disposition:
                headers["Content-Disposition"] = served.disposition
            repos = [key for key in web.json if key.startswith("hub:")]
            hub_repo = next((key for key in repos if path.startswith(f"/{key[4:]}/resolve/")), None)
            if hub_repo:
                name = path.split("/resolve/main/", 1)[1]
                headers.update({"X-Repo-Commit": COMMIT, "ETag": f'"{web.json[hub_repo][name]}"'})
            wanted = self.headers.get("Range", "")
            if wanted.startswith("bytes="):
                start = int(wanted[6:].split("-")[0])
                if start >= len(data):
                    return self._send(416, b"", {"Content-Range": f"bytes */{len(data)}"}, body)
                status = 206
                headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
            rest = data[start:]
            if not body:
                return self._send(status, rest, headers, body=False)
            if served.drop_after is not None and start < served.drop_after:
                cut = served.drop_after - start
                served.drop_after = None
                self.send_response(status)
                for key, value in {**headers, "Content-Length": str(len(rest))}.items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(rest[:cut])
                self.wfile.flush()
                self.close_connection = True
                return None
            if served.delay:
                self.send_response(status)
                for key, value in {**headers, "Content-Length": str(len(rest))}.items():
                    self.send_header(key, value)
                self.end_headers()
                for offset in range(0, len(rest), 65536):
                    self.wfile.write(rest[offset : offset + 65536])
                    self.wfile.flush()
                    time.sleep(served.delay)
                return None
            return self._send(status, rest, headers, body)

        def _send(self, status: int, data: bytes, headers: dict[str, str], body: bool = True) -> None:
            self.send_response(status)
            for key, value in {**headers, "Content-Length": str(len(data))}.items():
                self.send_header(key, value)
            self.end_headers()
            if body:
                self.wfile.write(data)

    return Handler


class FakeWebServer:
    """Run a `FakeWeb` on a free port of 127.0.0.1 in a thread, for a ``with`` block."""

    def __init__(self) -> None:
        self.web = FakeWeb()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self.web))
        self.web.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FakeWeb:
        self.thread.start()
        return self.web

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()
