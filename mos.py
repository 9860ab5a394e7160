"""A blind mean-opinion-score (MOS) study of SR images, in the browser, as in the SRGAN paper.

Two commands:

    python mos.py serve --images results/images [--db results/mos.sqlite] [--host 127.0.0.1]
                        [--port 8000] [--anchors nearest,hr] [--set data/Set5]
    python mos.py report --db results/mos.sqlite --out results/mos

``serve`` turns every ``<image>_<method>.png`` of ``--images`` (the files
``super_resolution.ipynb`` writes) into the study's items, each with an opaque random id, and
serves a rating page: every rater (a random token in a cookie) sees all items once, in their
own random order, one at a time at true size, and scores each 1 (bad) .. 5 (excellent) by a
button or the keys 1-5. Nothing on the page, in a URL or in a header names the method. Each
rating is committed to SQLite (WAL mode) when it is given, so a killed server loses nothing
and a restart on the same ``--db`` continues the same study; a rater who comes back in the same
browser continues where they stopped. The nearest-neighbour upscale and the HR image are
calibration anchors (``--anchors``): taken from the folder when there (``<image>_nearest.png``,
``<image>_hr.png``), otherwise made from the HR test set given by ``--set``.

``report`` reads the database only and writes the MOS per method (overall and per image) with
a 95% confidence interval and the number of ratings, a Mann-Whitney U test between each pair of
methods (see :func:`pairwise_tests` for why that test), as Markdown and CSV, and a figure.
"""
import argparse
import csv
import io
import ipaddress
import math
import random
import re
import secrets
import socket
import sqlite3
import sys
import time
from itertools import combinations
from pathlib import Path

from flask import Flask, Response, current_app, g, jsonify, request

import cli
import datasets
import report as tables
import utils

PROG = "mos.py"
SCALE = 4
SCORES = (1, 2, 3, 4, 5)
"""The rating scale: 1 = bad quality .. 5 = excellent (the SRGAN paper's scale)."""
SCORE_LABELS = {1: "bad", 2: "poor", 3: "fair", 4: "good", 5: "excellent"}

DEFAULT_DB = "results/mos.sqlite"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
ANCHOR_METHODS = ("nearest", "hr")
"""Calibration anchors: nearest-neighbour upscale of the LR image (worst) and the HR (best)."""
DEFAULT_ANCHORS = ",".join(ANCHOR_METHODS)
IMAGE_SUFFIX = ".png"
SET_EXTENSIONS = (".png", ".bmp", ".jpg", ".jpeg", ".tif", ".tiff")

COOKIE = "mos_rater"
COOKIE_MAX_AGE_S = 365 * 24 * 3600
TOKEN_BYTES = 32          # rater token: 256 random bits (secrets.token_urlsafe)
ITEM_ID_BYTES = 12        # item id: 96 random bits, hex
ITEM_ID_RE = re.compile(r"[0-9a-f]{%d}" % (2 * ITEM_ID_BYTES))
MAX_REQUEST_BYTES = 1024  # a rating is ~60 bytes of JSON; anything larger is refused (413)
SQLITE_BUSY_TIMEOUT_MS = 10_000
CONFIDENCE = 0.95
ALPHA = 1 - CONFIDENCE


# ----------------------------------------------------------------------------------------------
# The store
# ----------------------------------------------------------------------------------------------

SCHEMA = """
CREATE TABLE IF NOT EXISTS items (
    id TEXT PRIMARY KEY, image TEXT NOT NULL, method TEXT NOT NULL, path TEXT NOT NULL,
    UNIQUE (image, method));
CREATE TABLE IF NOT EXISTS raters (token TEXT PRIMARY KEY, created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS ratings (
    rater TEXT NOT NULL REFERENCES raters(token), item TEXT NOT NULL REFERENCES items(id),
    score INTEGER NOT NULL CHECK (score BETWEEN 1 AND 5), created REAL NOT NULL,
    PRIMARY KEY (rater, item));
"""


def connect(db_path):
    """An sqlite3 connection to ``db_path`` in WAL mode, autocommit (each statement is its own
    committed transaction), foreign keys on, waiting for a busy writer instead of failing."""
    con = sqlite3.connect(db_path, timeout=SQLITE_BUSY_TIMEOUT_MS / 1000,
                          isolation_level=None, check_same_thread=False)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA foreign_keys=ON")
    con.execute("PRAGMA synchronous=FULL")
    return con


def open_db(db_path):
    """Create (if needed) and open the study database ``db_path``; returns a connection."""
    db_path = Path(db_path)
    db_path.parent.mkdir(parents=True, exist_ok=True)
    con = connect(db_path)
    con.executescript(SCHEMA)
    return con


def add_items(con, files):
    """Add ``{(image, method): path}`` to the study; pairs already there keep their id (so a
    restart continues the same study) and get the current path. Returns the number added."""
    added = 0
    for (image, method), path in sorted(files.items()):
        row = con.execute("SELECT id FROM items WHERE image=? AND method=?",
                          (image, method)).fetchone()
        if row:
            con.execute("UPDATE items SET path=? WHERE id=?", (str(path), row[0]))
        else:
            con.execute("INSERT INTO items VALUES (?,?,?,?)",
                        (secrets.token_hex(ITEM_ID_BYTES), image, method, str(path)))
            added += 1
    return added


# ----------------------------------------------------------------------------------------------
# The study's images
# ----------------------------------------------------------------------------------------------

def parse_anchors(text):
    """``"nearest,hr"`` -> ``("nearest", "hr")``; ``""`` -> no anchors; an unknown name ->
    ValueError naming ``--anchors``."""
    names = tuple(n.strip().lower() for n in text.split(",") if n.strip())
    unknown = [n for n in names if n not in ANCHOR_METHODS]
    if unknown:
        raise ValueError(f"--anchors: unknown anchor {unknown[0]!r}; use a comma-separated "
                         f"subset of {DEFAULT_ANCHORS}")
    return names


def scan_images(folder):
    """``{(image, method): path}`` of the ``<image>_<method>.png`` files in ``folder`` (the method
    is the text after the last underscore, as ``report.compare_on_set`` names them)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"--images {folder}: no such folder")
    found = {}
    for path in sorted(folder.iterdir()):
        stem = path.name[:-len(IMAGE_SUFFIX)]
        if path.is_file() and path.name.lower().endswith(IMAGE_SUFFIX) and "_" in stem.strip("_"):
            image, method = stem.rsplit("_", 1)
            found[(image, method.lower())] = path.resolve()
    return found


def find_hr(set_dir, image):
    """The HR file of ``image`` in the test-set folder ``set_dir`` (usual extensions), or None."""
    for ext in SET_EXTENSIONS:
        for candidate in (Path(set_dir) / f"{image}{ext}", Path(set_dir) / f"{image}{ext.upper()}"):
            if candidate.is_file():
                return candidate
    return None


def set_folders(set_dir):
    """``--set`` -> ``(hr_dir, lr_dir or None)``: ``set_dir`` may be a set's HR folder or the set
    itself (EDSR layout ``<set>/HR``, ``<set>/LR_bicubic/X4``); the LR folder is used when
    present, as the notebook's ``TestDataset`` does."""
    set_dir = Path(set_dir)
    hr_dir = set_dir / "HR" if (set_dir / "HR").is_dir() else set_dir
    lr_dir = hr_dir.parent / "LR_bicubic" / f"X{SCALE}"
    return hr_dir, (lr_dir if lr_dir.is_dir() else None)


def anchor_lr(hr, image, lr_dir):
    """The LR image of ``image``: the set's own ``<image>x4`` file when it is there and of the
    right size, else the MATLAB-exact bicubic ``datasets.make_lr`` of ``hr``."""

    lr_path = find_hr(lr_dir, f"{image}x{SCALE}") if lr_dir is not None else None
    if lr_path is not None:
        lr = utils.load_image(lr_path)
        if lr.shape[:2] == (hr.shape[0] // SCALE, hr.shape[1] // SCALE) and lr.ndim == hr.ndim:
            return lr
    return datasets.make_lr(hr, SCALE)


def make_anchors(folder, images, anchors, set_dir):
    """Write the missing anchor files ``<image>_<anchor>.png`` into ``folder`` from the test set
    ``set_dir`` (see :func:`set_folders`): ``hr`` = the HR cropped to a multiple of
    :data:`SCALE` (the size of the SR images), ``nearest`` = the LR (:func:`anchor_lr`) enlarged
    by pixel repetition (``report.nearest_upsample``). Returns the paths written."""

    hr_dir, lr_dir = set_folders(set_dir)
    written = []
    for image in sorted(images):
        missing = [a for a in anchors if not (Path(folder) / f"{image}_{a}{IMAGE_SUFFIX}").exists()]
        hr_path = find_hr(hr_dir, image) if missing else None
        if hr_path is None:
            continue
        hr = utils.modcrop(utils.load_image(hr_path), SCALE)
        made = {"hr": lambda: hr,
                "nearest": lambda: tables.nearest_upsample(anchor_lr(hr, image, lr_dir), SCALE)}
        for anchor in missing:
            path = Path(folder) / f"{image}_{anchor}{IMAGE_SUFFIX}"
            utils.save_image(path, made[anchor]())
            written.append(path)
    return written


def study_files(folder, anchors=ANCHOR_METHODS, set_dir=None):
    """The study's ``{(image, method): path}``: every method of ``folder``, the anchors listed
    in ``anchors`` (made from ``set_dir`` when missing and ``set_dir`` is given) and no anchor
    that is not listed. Returns ``(files, notes)`` (notes: lines about missing anchors)."""
    found = scan_images(folder)
    if set_dir is not None:
        if not Path(set_dir).is_dir():
            raise FileNotFoundError(f"--set {set_dir}: no such folder")
        if make_anchors(folder, {i for i, _ in found}, anchors, set_dir):
            found = scan_images(folder)
    files = {k: p for k, p in found.items() if k[1] not in ANCHOR_METHODS or k[1] in anchors}
    methods = {m for _, m in files}
    if not files or not methods - set(ANCHOR_METHODS):
        raise ValueError(f"--images {folder}: no <image>_<method>{IMAGE_SUFFIX} files of an SR "
                         f"method (write them with super_resolution.ipynb)")
    notes = [f"anchor {a!r} is missing for some images (give --set with the HR test set to "
             f"make it)" for a in anchors
             if any((i, a) not in files for i in {i for i, _ in files})]
    return files, notes


# ----------------------------------------------------------------------------------------------
# The web app
# ----------------------------------------------------------------------------------------------

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
let busy = false;

function show(state) {
  current = state.item;
  if (current === null) {
    progress.textContent = 'Done: ' + state.done + ' of ' + state.total + ' rated. Thank you!';
    img.removeAttribute('src'); img.hidden = true;
    buttons.forEach(b => b.disabled = true);
    return;
  }
  progress.textContent = 'Image ' + (state.done + 1) + ' of ' + state.total;
  buttons.forEach(b => b.disabled = true);
  img.onload = () => {
    // one image pixel per screen pixel: no scaling that would blur the image
    img.style.width = (img.naturalWidth / window.devicePixelRatio) + 'px';
    img.style.height = (img.naturalHeight / window.devicePixelRatio) + 'px';
    buttons.forEach(b => b.disabled = false);
    busy = false;
  };
  img.onerror = () => {
    message.textContent = 'This image could not be loaded: reload the page, or tell the organiser';
  };
  img.hidden = false;
  img.src = '/image/' + current;
  window.scrollTo(0, 0);
}

async function call(url, options) {
  const response = await fetch(url, options);
  const body = await response.json().catch(() => ({}));
  if (!response.ok) { throw new Error(body.error || ('HTTP ' + response.status)); }
  return body;
}

async function rate(score) {
  if (busy || current === null) { return; }
  busy = true;
  message.textContent = '';
  try {
    show(await call('/api/rate', {method: 'POST', headers: {'Content-Type': 'application/json'},
                                  body: JSON.stringify({item: current, score: score})}));
  } catch (e) {
    message.textContent = 'Not saved: ' + e.message + ' (reload the page)';
    busy = false;
  }
}

buttons.forEach(b => b.addEventListener('click', () => rate(Number(b.dataset.score))));
document.addEventListener('keydown', e => {
  if (e.key >= '1' && e.key <= '5' && !e.ctrlKey && !e.altKey && !e.metaKey) {
    e.preventDefault();
    rate(Number(e.key));
  }
});
busy = true;
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


def parse_rating(payload):
    """``{"item": id, "score": 1..5}`` (JSON object) -> ``(item, score)``; else :class:`Refused`."""
    if not isinstance(payload, dict) or set(payload) != {"item", "score"}:
        raise Refused(400, 'expected a JSON object {"item": ..., "score": 1..5}')
    item, score = payload["item"], payload["score"]
    if not isinstance(item, str) or not ITEM_ID_RE.fullmatch(item):
        raise Refused(404, "unknown item")
    if type(score) is not int or score not in SCORES:     # bool, float, str are refused
        raise Refused(400, "score must be an integer from 1 to 5")
    return item, score


def create_app(db_path):
    """The Flask app of the study in ``db_path`` (made by ``open_db`` + ``add_items``): the page,
    its static files, the images by opaque id, and the two API routes (:func:`_add_routes`)."""
    app = Flask(__name__, static_folder=None)
    app.config.update(MAX_CONTENT_LENGTH=MAX_REQUEST_BYTES, MOS_DB=str(db_path))
    app.teardown_appcontext(_close_db)
    app.after_request(_security_headers)
    app.register_error_handler(Refused, lambda exc: (jsonify(error=str(exc)), exc.status))
    app.register_error_handler(413, lambda _exc: (
        jsonify(error=f"request larger than {MAX_REQUEST_BYTES} bytes"), 413))
    app.register_error_handler(404, lambda _exc: (jsonify(error="not found"), 404))
    app.register_error_handler(405, lambda _exc: (jsonify(error="method not allowed"), 405))
    _add_routes(app)
    return app


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


def _known_rater():
    """The rater token of this request's cookie when the database knows it, else None."""
    token = request.cookies.get(COOKIE, "")
    if token and _db().execute("SELECT 1 FROM raters WHERE token=?", (token,)).fetchone():
        return token
    return None


def _rater_or_refuse():
    token = _known_rater()
    if token is None:
        raise Refused(403, "no rater cookie: open the start page first")
    return token


def _progress(token):
    """``{"item": next item id or None, "done": rated, "total": items}`` of rater ``token``."""
    ids = [r[0] for r in _db().execute("SELECT id FROM items")]
    rated = {r[0] for r in _db().execute("SELECT item FROM ratings WHERE rater=?", (token,))}
    pending = [i for i in rater_order(token, ids) if i not in rated]
    return {"item": pending[0] if pending else None, "done": len(rated), "total": len(ids)}


def _add_routes(app):
    """The study's routes: ``/`` (the page; sets a new rater's cookie), ``/static/<name>``,
    ``/image/<item>``, ``GET /api/next`` and ``POST /api/rate`` (JSON ``{item, score}``)."""
    @app.get("/")
    def page():
        response = Response(PAGE_HTML, mimetype="text/html")
        if _known_rater() is None:
            token = secrets.token_urlsafe(TOKEN_BYTES)
            _db().execute("INSERT INTO raters VALUES (?,?)", (token, time.time()))
            response.set_cookie(COOKIE, token, max_age=COOKIE_MAX_AGE_S, httponly=True,
                                samesite="Strict", path="/")
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
            row = _db().execute("SELECT path FROM items WHERE id=?", (item,)).fetchone()
        if row is None:
            raise Refused(404, "unknown item")
        try:
            data = Path(row[0]).read_bytes()
        except OSError:
            raise Refused(404, "image file is gone") from None
        return Response(data, mimetype="image/png")

    @app.get("/api/next")
    def next_item():
        return jsonify(_progress(_rater_or_refuse()))

    @app.post("/api/rate")
    def rate():
        token = _rater_or_refuse()
        if not request.is_json:
            raise Refused(415, "expected Content-Type: application/json")
        payload = request.get_json(silent=True)
        if payload is None:
            raise Refused(400, "malformed JSON")
        item, score = parse_rating(payload)
        if not _db().execute("SELECT 1 FROM items WHERE id=?", (item,)).fetchone():
            raise Refused(404, "unknown item")
        try:
            _db().execute("INSERT INTO ratings VALUES (?,?,?,?)", (token, item, score, time.time()))
        except sqlite3.IntegrityError:
            raise Refused(409, "this image is already rated by you") from None
        return jsonify(_progress(token))


# ----------------------------------------------------------------------------------------------
# serve
# ----------------------------------------------------------------------------------------------

def port_number(text):
    """``"8000"`` -> 8000; anything but an integer 1..65535 -> ValueError naming ``--port``."""
    try:
        port = int(text)
    except ValueError:
        port = None
    if port is None or not 1 <= port <= 65535:
        raise ValueError(f"--port {text!r}: use an integer from 1 to 65535")
    return port


def check_listen(host, port):
    """Raise OSError (one line) when ``host:port`` cannot be listened on (port in use, no such
    address, privileged port); werkzeug would print several lines and exit instead."""
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        socket.create_server((host, port), family=family).close()
    except OSError as e:
        raise OSError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None


def local_addresses():
    """This machine's non-loopback addresses (by its host name; empty when it has none)."""
    try:
        infos = socket.getaddrinfo(socket.gethostname(), None)
    except OSError:
        return []
    return sorted({a[4][0] for a in infos
                   if not ipaddress.ip_address(a[4][0].split("%")[0]).is_loopback})


def reach_note(host, port):
    """Who can reach a server bound to ``host``: one line for the console."""
    try:
        loopback = ipaddress.ip_address(socket.gethostbyname(host)).is_loopback
    except (OSError, ValueError):
        loopback = False
    if loopback:
        return f"only this machine can reach the study: http://{host}:{port}/"
    addresses = local_addresses() if host in ("0.0.0.0", "::") else [host]
    urls = ", ".join(f"http://{a}:{port}/" for a in addresses) or f"http://{host}:{port}/"
    return (f"WARNING: every machine that can reach {host} on port {port} can open the study "
            f"and rate ({urls}); use --host {DEFAULT_HOST} for this machine only")


def serve(args):
    """``mos.py serve``: prepare the study in ``--db`` and serve it until Ctrl-C."""
    from werkzeug.serving import make_server

    port = port_number(args.port)
    anchors = parse_anchors(args.anchors)
    files, notes = study_files(args.images, anchors, args.set)
    check_listen(args.host, port)
    for note in notes:
        print(f"{PROG}: warning: {note}", file=sys.stderr)
    con = open_db(args.db)
    added = add_items(con, files)
    items, raters, ratings = (con.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]
                              for t in ("items", "raters", "ratings"))
    con.close()
    images = len({i for i, _ in files})
    print(f"study {args.db}: {items} items ({images} images x {len({m for _, m in files})} "
          f"methods here, {added} new), {raters} raters, {ratings} ratings so far")
    server = make_server(args.host, port, create_app(args.db), threaded=True)
    print(reach_note(args.host, port))
    print("Ctrl-C stops the server; every rating is already saved")
    sys.stdout.flush()
    try:
        server.serve_forever()
    finally:
        server.server_close()


# ----------------------------------------------------------------------------------------------
# report: statistics
# ----------------------------------------------------------------------------------------------

def load_ratings(db_path):
    """``[(rater, image, method, score)]`` of the study in ``db_path`` (read only)."""
    path = Path(db_path)
    if not path.is_file():
        raise FileNotFoundError(f"--db {db_path}: no such file")
    try:
        con = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        rows = con.execute("SELECT r.rater, i.image, i.method, r.score FROM ratings r "
                           "JOIN items i ON i.id = r.item").fetchall()
        con.close()
    except sqlite3.DatabaseError as e:
        raise ValueError(f"--db {db_path}: not a MOS study database ({e})") from None
    if not rows:
        raise ValueError(f"--db {db_path}: no ratings yet")
    return rows


def mean_ci(scores, confidence=CONFIDENCE):
    """``(mean, half_width, n)``: the mean of ``scores`` and the half width of its Student-t
    confidence interval, ``t_{(1+c)/2, n-1} * s / sqrt(n)`` (s: sample standard deviation);
    half width NaN for a single score."""
    from scipy import stats

    n = len(scores)
    mean = sum(scores) / n
    if n < 2:
        return mean, math.nan, n
    sd = math.sqrt(sum((s - mean) ** 2 for s in scores) / (n - 1))
    return mean, stats.t.ppf((1 + confidence) / 2, n - 1) * sd / math.sqrt(n), n


def method_order(methods):
    """Methods in table order: the nearest anchor, the SR methods by name, the HR anchor."""
    rank = {"nearest": 0, "hr": 2}
    return sorted(methods, key=lambda m: (rank.get(m, 1), m))


def summary(rows):
    """Per method, and per (image, method): ``{"mos", "ci", "n", "counts"}`` (counts of each
    score 1..5). Returns ``(by_method, by_image)``."""
    def stats_of(scores):
        mean, half, n = mean_ci(scores)
        return {"mos": mean, "ci": half, "n": n, "counts": [scores.count(s) for s in SCORES]}

    per_method, per_image = {}, {}
    for _, image, method, score in rows:
        per_method.setdefault(method, []).append(score)
        per_image.setdefault((image, method), []).append(score)
    return ({m: stats_of(per_method[m]) for m in method_order(per_method)},
            {k: stats_of(v) for k, v in sorted(per_image.items())})


def holm(pvalues):
    """Holm-Bonferroni adjusted p-values (same order as ``pvalues``)."""
    order = sorted(range(len(pvalues)), key=lambda i: pvalues[i])
    adjusted, running = [0.0] * len(pvalues), 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(pvalues) - rank) * pvalues[i]))
        adjusted[i] = running
    return adjusted


def pairwise_tests(rows):
    """Two-sided Mann-Whitney U test between the scores of every pair of methods.

    Why this test: opinion scores are ordinal (a 4 is better than a 2, but not "twice as
    good"), with many ties and far from normal, so a t-test on the means is not justified;
    Mann-Whitney U uses only the ranks of the scores (ties get mid-ranks, with the tie
    correction of the normal approximation) and asks whether one method's scores tend to be
    higher than the other's. It treats the two methods' scores as independent samples, which
    is conservative here (the same raters score both). The p-values are also given Holm-adjusted
    for the number of pairs.

    Returns ``[{"a", "b", "n_a", "n_b", "u", "p", "p_holm", "p_a_better"}]``, where ``u`` is U
    of ``a`` and ``p_a_better`` = U / (n_a n_b), the probability that a random score of ``a``
    beats one of ``b`` (ties count half).
    """
    from scipy import stats

    scores = {}
    for _, _, method, score in rows:
        scores.setdefault(method, []).append(score)
    tests = []
    for a, b in combinations(method_order(scores), 2):
        if len(set(scores[a] + scores[b])) < 2:      # all scores equal: no evidence either way
            u, p = len(scores[a]) * len(scores[b]) / 2, 1.0
        else:
            res = stats.mannwhitneyu(scores[a], scores[b], alternative="two-sided")
            u, p = float(res.statistic), float(res.pvalue)
        tests.append({"a": a, "b": b, "n_a": len(scores[a]), "n_b": len(scores[b]), "u": u,
                      "p": p, "p_a_better": u / (len(scores[a]) * len(scores[b]))})
    for test, adjusted in zip(tests, holm([t["p"] for t in tests])):
        test["p_holm"] = adjusted
    return tests


# ----------------------------------------------------------------------------------------------
# report: files
# ----------------------------------------------------------------------------------------------

def _fmt(value, digits=2):
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) \
        else f"{value:.{digits}f}"


def _p(value):
    return "<0.001" if value < 0.001 else f"{value:.3f}"


def _table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def report_markdown(by_method, by_image, tests, raters):
    """The report's Markdown: overall MOS table, per-image table, pairwise tests."""
    pct = int(CONFIDENCE * 100)
    overall = _table(["method", "MOS", f"{pct}% CI", "ratings"] + [str(s) for s in SCORES],
                     [[m, _fmt(s["mos"]), f"± {_fmt(s['ci'])}", s["n"]] + s["counts"]
                      for m, s in by_method.items()])
    methods = list(by_method)
    images = sorted({i for i, _ in by_image})
    per_image = _table(["image"] + methods, [
        [image] + [f"{_fmt(by_image[(image, m)]['mos'])} ± {_fmt(by_image[(image, m)]['ci'])} "
                   f"(n={by_image[(image, m)]['n']})" if (image, m) in by_image else "–"
                   for m in methods] for image in images])
    pairs = _table(["A", "B", "U", "P(A > B)", "p", "p (Holm)"],
                   [[t["a"], t["b"], _fmt(t["u"], 1), _fmt(t["p_a_better"]), _p(t["p"]),
                     _p(t["p_holm"])] for t in tests])
    return "\n\n".join([
        "# Mean opinion score (MOS)",
        f"{sum(s['n'] for s in by_method.values())} ratings by {raters} raters of "
        f"{len(images)} images; scores 1 (bad) .. 5 (excellent), methods hidden from the "
        f"raters, each rater in their own random order (MOS protocol of Ledig et al., CVPR 2017), "
        f"with nearest-neighbour and HR images as calibration anchors.",
        f"## Per method\n\nMOS ± half width of the {pct}% Student-t confidence interval; "
        f"the last columns count each score.\n\n{overall}",
        f"## Per image\n\n{per_image}",
        "## Pairwise tests\n\nTwo-sided Mann-Whitney U test on the scores of each pair of "
        "methods (rank-based, so valid for ordinal scores with ties; no normality assumed). "
        "P(A > B) = U / (n_A n_B), ties counted half; p (Holm) is adjusted for the number of "
        f"pairs.\n\n{pairs}",
    ]) + "\n"


def _csv(header, rows):
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buf.getvalue()


def report_csvs(by_method, by_image, tests):
    """``{file name: CSV text}``: per method, per image, pairwise tests (full precision)."""
    counts = [f"n_{s}" for s in SCORES]
    return {
        "mos_methods.csv": _csv(["method", "mos", "ci95", "n"] + counts,
                                [[m, s["mos"], s["ci"], s["n"]] + s["counts"]
                                 for m, s in by_method.items()]),
        "mos_images.csv": _csv(["image", "method", "mos", "ci95", "n"] + counts,
                               [[i, m, s["mos"], s["ci"], s["n"]] + s["counts"]
                                for (i, m), s in by_image.items()]),
        "mos_tests.csv": _csv(["a", "b", "n_a", "n_b", "u", "p_a_better", "p", "p_holm"],
                              [[t[k] for k in ("a", "b", "n_a", "n_b", "u", "p_a_better", "p",
                                               "p_holm")] for t in tests]),
    }


FIGURE_SIZE = (10, 4)
SCORE_COLOURS = ("#d7191c", "#fdae61", "#ffffbf", "#a6d96a", "#1a9641")


def report_figure(by_method, path):
    """Save a figure: MOS with its confidence interval per method (left) and the distribution
    of the scores per method as stacked shares (right), as in the SRGAN paper's figures."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods = list(by_method)
    x = range(len(methods))
    fig, (left, right) = plt.subplots(1, 2, figsize=FIGURE_SIZE)
    left.errorbar(x, [by_method[m]["mos"] for m in methods],
                  yerr=[0 if math.isnan(by_method[m]["ci"]) else by_method[m]["ci"]
                        for m in methods], fmt="o", capsize=5)
    left.set(xticks=list(x), xticklabels=methods, ylim=(1, 5), ylabel="MOS",
             title=f"MOS with {int(CONFIDENCE * 100)}% CI")
    left.grid(axis="y", alpha=0.3)
    bottom = [0.0] * len(methods)
    for k, score in enumerate(SCORES):
        share = [by_method[m]["counts"][k] / by_method[m]["n"] for m in methods]
        right.bar(x, share, bottom=bottom, color=SCORE_COLOURS[k], edgecolor="grey",
                  label=f"{score} {SCORE_LABELS[score]}")
        bottom = [b + s for b, s in zip(bottom, share)]
    right.set(xticks=list(x), xticklabels=methods, ylim=(0, 1), ylabel="share of ratings",
              title="Distribution of scores")
    right.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize="small")
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_report(db_path, out_dir):
    """Write ``mos.md``, the CSVs and ``mos.png`` of the study ``db_path`` into ``out_dir``;
    returns the paths."""
    rows = load_ratings(db_path)
    by_method, by_image = summary(rows)
    tests = pairwise_tests(rows)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    texts = {"mos.md": report_markdown(by_method, by_image, tests, len({r[0] for r in rows}))}
    texts.update(report_csvs(by_method, by_image, tests))
    paths = []
    for name, text in texts.items():
        with utils.atomic_write(out / name, "w", what="report", encoding="utf-8") as f:
            f.write(text)
        paths.append(out / name)
    report_figure(by_method, out / "mos.png")
    return paths + [out / "mos.png"]


def report(args):
    """``mos.py report``: the tables and the figure."""
    for path in write_report(args.db, args.out):
        print(path)


# ----------------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------------

def parser():
    """The argument parser of ``mos.py``."""
    p = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("serve", help="serve the rating page")
    s.add_argument("--images", required=True, help="folder of <image>_<method>.png")
    s.add_argument("--db", default=DEFAULT_DB, help=f"study database (default {DEFAULT_DB})")
    s.add_argument("--host", default=DEFAULT_HOST, help=f"address to bind (default {DEFAULT_HOST}:"
                                                        " this machine only)")
    s.add_argument("--port", default=str(DEFAULT_PORT), help=f"default {DEFAULT_PORT}")
    s.add_argument("--anchors", default=DEFAULT_ANCHORS,
                   help=f"calibration anchors to include (default {DEFAULT_ANCHORS}; '' for none)")
    s.add_argument("--set", default=None,
                   help="HR test set folder (<image>.png ...): makes missing anchors")
    r = sub.add_parser("report", help="MOS tables and figure from the database")
    r.add_argument("--db", default=DEFAULT_DB, help=f"study database (default {DEFAULT_DB})")
    r.add_argument("--out", default="results/mos", help="output folder (default results/mos)")
    return p


def main(argv=None):
    """Entry point: parse ``argv`` and run the subcommand; expected errors are one line."""
    args = parser().parse_args(argv)
    try:
        return (serve if args.command == "serve" else report)(args)
    except (OSError, ValueError) as e:
        return cli.fail(PROG, e)


if __name__ == "__main__":
    sys.exit(cli.run(PROG, main))
