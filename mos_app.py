"""The MOS study's web app (``mos.py serve``): the rating page and the Flask app that serves it.

- the page: its HTML, CSS and JavaScript (:data:`PAGE_HTML`, :data:`PAGE_CSS`,
  :data:`PAGE_JS`), sent with strict security headers (:data:`SECURITY_HEADERS`);
- the Flask app (:func:`create_app`) and its routes: the page and its static files, the images
  by opaque item id (:func:`_add_page_routes`), and the rating API (:func:`_add_api_routes`);
  each rater's own random order of the items (:func:`rater_order`) and progress;
- the checks of a request: its rater cookie, its JSON body (:func:`parse_rating`,
  :func:`parse_skip`), its Host header against the served host names (:func:`served_hosts`,
  :func:`local_addresses`: no DNS rebinding); refusals as short JSON errors (:class:`Refused`),
  a failing database or disk as HTTP :data:`STORE_FAILED_STATUS`.
"""
import errno
import hashlib
import ipaddress
import math
import random
import re
import secrets
import socket
import sqlite3
import sys
import time
from pathlib import Path

from flask import Flask, Response, current_app, g, jsonify, request

import cli
from mos_db import ITEM_ID_BYTES, SCORES, connect, recheck_items, transaction

PROG = "mos.py"
"""The tool's name in its console lines (the server's and the command line's)."""
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
HTTP_DEFAULT_PORT = 80      # a browser leaves this port out of the Host header
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")
"""Host names always served (with the port): this machine's own."""
WILDCARD_HOSTS = ("0.0.0.0", "::")
"""``--host`` values that listen on every address: then this machine's addresses and name are
served too."""
COOKIE = "mos_rater"
COOKIE_MAX_AGE_S = 365 * 24 * 3600
TOKEN_BYTES = 32          # rater token: 256 random bits (secrets.token_urlsafe)
TOKEN_RE = re.compile(r"[A-Za-z0-9_-]{%d}" % math.ceil(TOKEN_BYTES * 8 / 6))   # 6 bits a char
"""A rater token as ``secrets.token_urlsafe(TOKEN_BYTES)`` writes it (base64url, no padding)."""
ITEM_ID_RE = re.compile(r"[0-9a-f]{%d}" % (2 * ITEM_ID_BYTES))
MAX_REQUEST_BYTES = 1024  # a rating is ~60 bytes of JSON; anything larger is refused (413)
STORE_FAILED_STATUS = 503  # the database or its disk failed (e.g. full): try again later
WITHDRAWN = "this image was withdrawn from the study (its file is gone or changed)"


PAGE_HTML = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Image quality rating</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="stylesheet" href="/static/app.css"></head>
<body>
<header>
 <p id="progress" role="status">Loading…</p>
 <p class="help">Rate the quality of each image: 1 = bad, 5 = excellent.
 Click a button or press a key 1-5. Scroll to see the whole image.</p>
 <div id="buttons">
  <button data-score="1">1 bad</button><button data-score="2">2 poor</button>
  <button data-score="3">3 fair</button><button data-score="4">4 good</button>
  <button data-score="5">5 excellent</button>
 </div>
 <p id="message" role="alert"></p>
</header>
<main id="viewer"><img id="image" alt="image to rate"></main>
<script src="/static/app.js"></script>
</body></html>
"""

PAGE_CSS = """body { margin: 0; font-family: sans-serif; background: #808080; color: #000; }
header { position: sticky; top: 0; background: #ddd; padding: 0.4em 1em; z-index: 1; }
header p { margin: 0.2em 0; }
button { font-size: 1.1em; margin-right: 0.4em; padding: 0.3em 0.8em; }
button:disabled { opacity: 0.5; }
#message { color: #900; min-height: 1.2em; }
#viewer { overflow: auto; padding: 1em; }
#image { display: block; max-width: none; max-height: none; image-rendering: pixelated; }
"""

PAGE_JS = """'use strict';
const img = document.getElementById('image');
const progress = document.getElementById('progress');
const message = document.getElementById('message');
const buttons = Array.from(document.querySelectorAll('button[data-score]'));
let current = null;
let busy = true;   // no rating while an image loads or a request is under way

function enable(on) { buttons.forEach(b => b.disabled = !on); }

function show(state) {
  current = state.item;
  busy = true;
  enable(false);
  if (current === null) {
    progress.textContent = 'Done: ' + state.done + ' of ' + state.total + ' rated' +
      (state.skipped ? ' (' + state.skipped + ' could not be shown)' : '') + '. Thank you!';
    img.removeAttribute('src'); img.hidden = true;
    return;
  }
  progress.textContent = 'Image ' + (state.done + state.skipped + 1) + ' of ' + state.total;
  img.hidden = false;
  img.src = '/image/' + current;
  window.scrollTo(0, 0);
}

img.addEventListener('load', () => {
  // one image pixel per screen pixel: no scaling that would blur the image
  img.style.width = (img.naturalWidth / window.devicePixelRatio) + 'px';
  img.style.height = (img.naturalHeight / window.devicePixelRatio) + 'px';
  enable(true);
  busy = false;
});

async function call(url, options) {
  const response = await fetch(url, options);
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    const error = new Error(body.error || ('HTTP ' + response.status));
    error.status = response.status;
    throw error;
  }
  return body;
}

function post(url, body) {
  return call(url, {method: 'POST', headers: {'Content-Type': 'application/json'},
                    body: JSON.stringify(body)});
}

// An image that cannot be shown: the server checks its file (and withdraws it when it is gone
// or changed) and this rater moves on to the next image.
img.addEventListener('error', async () => {
  if (current === null || !img.getAttribute('src')) { return; }
  message.textContent = 'An image could not be shown and was skipped.';
  try {
    show(await post('/api/skip', {item: current}));
  } catch (e) {
    message.textContent = 'An image could not be shown: ' + e.message + ' (reload the page)';
  }
});

async function rate(score) {
  if (busy || current === null) { return; }
  busy = true;
  message.textContent = '';
  try {
    show(await post('/api/rate', {item: current, score: score}));
  } catch (e) {
    message.textContent = 'Not saved: ' + e.message;
    if (e.status === 409 || e.status === 410) {     // rated elsewhere, or withdrawn: next one
      call('/api/next').then(show).catch(n => { message.textContent = n.message; });
    } else {
      busy = false;                                 // e.g. 503 (disk full): the rater may retry
    }
  }
}

buttons.forEach(b => b.addEventListener('click', () => rate(Number(b.dataset.score))));
document.addEventListener('keydown', e => {
  if (e.key >= '1' && e.key <= '5' && !e.ctrlKey && !e.altKey && !e.metaKey) {
    e.preventDefault();
    rate(Number(e.key));
  }
});
call('/api/next').then(show).catch(e => { message.textContent = e.message; });
"""

STATIC = {"app.css": (PAGE_CSS, "text/css"), "app.js": (PAGE_JS, "text/javascript")}
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; "
                               "img-src 'self'; connect-src 'self'; base-uri 'none'; "
                               "form-action 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}


def rater_order(token, item_ids):
    """The rater's own random order of ``item_ids`` (stable for the token, so it survives a
    restart; different raters get independent orders)."""
    order = sorted(item_ids)
    random.Random(token).shuffle(order)
    return order


class Refused(Exception):
    """A request the study refuses: ``status`` (HTTP) and a one-line ``message``."""

    def __init__(self, status, message):
        super().__init__(message)
        self.status = status


def parse_item(item):
    """An item id as sent by the page -> the id; anything else -> :class:`Refused` 404."""
    if not isinstance(item, str) or not ITEM_ID_RE.fullmatch(item):
        raise Refused(404, "unknown item")
    return item


def parse_rating(payload):
    """``{"item": id, "score": 1..5}`` (JSON object) -> ``(item, score)``; else :class:`Refused`."""
    if not isinstance(payload, dict) or set(payload) != {"item", "score"}:
        raise Refused(400, 'expected a JSON object {"item": ..., "score": 1..5}')
    item, score = parse_item(payload["item"]), payload["score"]
    if type(score) is not int or score not in SCORES:     # bool, float, str are refused
        raise Refused(400, "score must be an integer from 1 to 5")
    return item, score


def parse_skip(payload):
    """``{"item": id}`` (JSON object) -> ``item``; else :class:`Refused`."""
    if not isinstance(payload, dict) or set(payload) != {"item"}:
        raise Refused(400, 'expected a JSON object {"item": ...}')
    return parse_item(payload["item"])


def _bracketed(host):
    """``host`` as it stands in a Host header: an IPv6 address in brackets."""
    try:
        return f"[{host}]" if ipaddress.ip_address(host).version == 6 else host
    except ValueError:
        return host


def served_hosts(host, port):
    """The Host header values (lower case) a server bound to ``host``:``port`` (int 1..65535)
    answers: ``name:port`` for the loopback names (:data:`LOOPBACK_NAMES`), ``host`` itself and,
    for a wildcard ``host`` (:data:`WILDCARD_HOSTS`), this machine's addresses and names; and
    ``name`` alone on port :data:`HTTP_DEFAULT_PORT`. A web page of another site reaching the
    server by DNS rebinding sends its own name, which is not among them."""
    names = set(LOOPBACK_NAMES) | {_bracketed(host)}
    if host in WILDCARD_HOSTS:
        names |= {_bracketed(a) for a in local_addresses()}
        names |= {socket.gethostname(), socket.getfqdn()}
    hosts = {f"{n}:{port}" for n in names}
    if port == HTTP_DEFAULT_PORT:
        hosts |= names
    return frozenset(h.lower() for h in hosts)


def local_addresses():
    """This machine's non-loopback addresses (by its host name; empty when it has none)."""
    try:
        infos = socket.getaddrinfo(socket.gethostname(), None)
    except OSError:
        return []
    return sorted({a[4][0] for a in infos
                   if not ipaddress.ip_address(a[4][0].split("%")[0]).is_loopback})


def create_app(db_path, host=DEFAULT_HOST, port=DEFAULT_PORT):
    """The Flask app of the study in ``db_path`` (made by ``mos_db.open_db`` and
    ``mos_db.sync_items``) served on ``host``:``port`` (port: int 1..65535; requests for other
    hosts are refused, see :func:`served_hosts`): the page, its static files, the images by
    opaque id (:func:`_add_page_routes`) and the rating API (:func:`_add_api_routes`)."""
    app = Flask(__name__, static_folder=None)
    app.config.update(MAX_CONTENT_LENGTH=MAX_REQUEST_BYTES, MOS_DB=str(db_path),
                      MOS_HOSTS=served_hosts(host, port))
    app.before_request(_check_host)
    app.teardown_appcontext(_close_db)
    app.after_request(_security_headers)
    app.register_error_handler(Refused, lambda exc: (jsonify(error=str(exc)), exc.status))
    app.register_error_handler(413, lambda _exc: (
        jsonify(error=f"request larger than {MAX_REQUEST_BYTES} bytes"), 413))
    app.register_error_handler(404, lambda _exc: (jsonify(error="not found"), 404))
    app.register_error_handler(405, lambda _exc: (jsonify(error="method not allowed"), 405))
    app.register_error_handler(sqlite3.Error, _store_failed)
    app.register_error_handler(OSError, _store_failed)
    _add_page_routes(app)
    _add_api_routes(app)
    return app


def _check_host():
    if request.headers.get("Host", "").lower() not in current_app.config["MOS_HOSTS"]:
        raise Refused(400, "unknown Host: open the study at the address the organiser gave")


FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


def _store_failed(exc):
    """A database or disk failure (sqlite3.Error, OSError; e.g. a full disk): one line on the
    console, a short JSON error for the page, HTTP :data:`STORE_FAILED_STATUS`. Whatever the
    request was writing is rolled back (``mos_db.transaction``); nothing stored before is
    touched."""
    full = getattr(exc, "errno", None) in FULL_ERRNOS or "full" in str(exc).lower()
    print(f"{PROG}: error: {request.method} {request.path}: {cli.one_line(exc)}",
          file=sys.stderr, flush=True)
    reason = "its disk is full" if full else "its database failed"
    return jsonify(error=f"the study could not save this: {reason}; please tell the "
                         f"organiser"), STORE_FAILED_STATUS


def _db():
    """This request's connection to the study database (opened on first use)."""
    if "db" not in g:
        g.db = connect(current_app.config["MOS_DB"])
    return g.db


def _close_db(_exc):
    con = g.pop("db", None)
    if con is not None:
        con.close()


def _security_headers(response):
    response.headers.update(SECURITY_HEADERS)
    return response


def _token():
    """The rater token of this request's cookie when it is one (see :data:`TOKEN_RE`), else
    None. A token is stored (in ``raters``) with its first rating only; one made up by the
    client is no more than a new rater, as a fresh cookie from ``/`` would be."""
    token = request.cookies.get(COOKIE, "")
    return token if TOKEN_RE.fullmatch(token) else None


def _token_or_refuse():
    token = _token()
    if token is None:
        raise Refused(403, "no rater cookie: open the start page first")
    return token


def _json_payload():
    if not request.is_json:
        raise Refused(415, "expected Content-Type: application/json")
    payload = request.get_json(silent=True)
    if payload is None:
        raise Refused(400, "malformed JSON")
    return payload


def _progress(token):
    """``{"item": next item id or None, "done": rated, "skipped": could not be shown, "total":
    items}`` of rater ``token``, over the current (not retired) items."""
    con = _db()
    ids = [r[0] for r in con.execute("SELECT id FROM items WHERE retired IS NULL")]
    current = set(ids)
    rated = {r[0] for r in con.execute("SELECT item FROM ratings WHERE rater=?", (token,))}
    skipped = {r[0] for r in con.execute("SELECT item FROM skips WHERE rater=?", (token,))}
    rated, skipped = rated & current, (skipped - rated) & current
    pending = [i for i in rater_order(token, ids) if i not in rated and i not in skipped]
    return {"item": pending[0] if pending else None, "done": len(rated),
            "skipped": len(skipped), "total": len(ids)}


def _item_state(item):
    """``"current"`` or ``"retired"`` for a known item id; unknown -> :class:`Refused` 404."""
    row = _db().execute("SELECT retired FROM items WHERE id=?", (item,)).fetchone()
    if row is None:
        raise Refused(404, "unknown item")
    return "current" if row[0] is None else "retired"


def _add_page_routes(app):
    """The page's routes: ``/`` (the page; gives a new rater's cookie), ``/static/<name>`` (its
    CSS and JavaScript) and ``/image/<item>`` (an item's PNG by its opaque id; 410 when the item
    is retired, or retired now because its file is gone or changed)."""
    @app.get("/")
    def page():
        response = Response(PAGE_HTML, mimetype="text/html")
        if _token() is None:          # nothing is stored until the first rating
            response.set_cookie(COOKIE, secrets.token_urlsafe(TOKEN_BYTES),
                                max_age=COOKIE_MAX_AGE_S, httponly=True, samesite="Strict",
                                path="/")
        return response

    @app.get("/static/<name>")
    def static_file(name):
        if name not in STATIC:
            raise Refused(404, "not found")
        text, mimetype = STATIC[name]
        return Response(text, mimetype=mimetype)

    @app.get("/image/<item>")
    def image(item):
        row = None
        if ITEM_ID_RE.fullmatch(item):
            row = _db().execute("SELECT path, sha256, retired FROM items WHERE id=?",
                                (item,)).fetchone()
        if row is None:
            raise Refused(404, "unknown item")
        if row[2] is not None:
            raise Refused(410, WITHDRAWN)
        try:
            data = Path(row[0]).read_bytes()
        except OSError:
            data = None
        if data is None or (row[1] is not None and hashlib.sha256(data).hexdigest() != row[1]):
            recheck_items(_db())             # gone or changed: retired for every rater
            raise Refused(410, WITHDRAWN)
        return Response(data, mimetype="image/png")


def _add_api_routes(app):
    """The rating API, JSON in and out, for the rater of the request's cookie: ``GET /api/next``
    (their progress and next item), ``POST /api/rate`` (JSON ``{item, score}``) and ``POST
    /api/skip`` (JSON ``{item}``: the page could not show it); the last two answer as
    ``/api/next`` does."""
    @app.get("/api/next")
    def next_item():
        return jsonify(_progress(_token_or_refuse()))

    @app.post("/api/rate")
    def rate():
        token = _token_or_refuse()
        item, score = parse_rating(_json_payload())
        now = time.time()
        with transaction(_db()) as con:
            if _item_state(item) == "retired":
                raise Refused(410, WITHDRAWN)
            con.execute("INSERT OR IGNORE INTO raters VALUES (?,?)", (token, now))
            try:
                con.execute("INSERT INTO ratings VALUES (?,?,?,?)", (token, item, score, now))
            except sqlite3.IntegrityError:
                raise Refused(409, "this image is already rated by you") from None
        return jsonify(_progress(token))

    @app.post("/api/skip")
    def skip():
        token = _token_or_refuse()
        item = parse_skip(_json_payload())
        if _item_state(item) == "current":
            recheck_items(_db())             # its file (or another) gone or changed: retired
        if _item_state(item) == "current":
            # the file is fine: this browser could not show it; this rater moves on
            _db().execute("INSERT OR IGNORE INTO skips VALUES (?,?,?)", (token, item, time.time()))
        return jsonify(_progress(token))
