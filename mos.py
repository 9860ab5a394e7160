"""A blind mean-opinion-score (MOS) study of SR images, in the browser, as in the SRGAN paper.

Two commands:

    python mos.py serve --images results/images [--db results/mos.sqlite] [--host 127.0.0.1]
                        [--port 8000] [--anchors nearest,hr] [--set data/Set5]
    python mos.py report --db results/mos.sqlite --out results/mos

``serve`` turns every ``<image>_<method>.png`` of ``--images`` (the files
``super_resolution.ipynb`` writes) into the study's items, each with an opaque random id and the
SHA-256 of its content, and serves a rating page: every rater (a random token in a cookie) sees
all items once, in their own random order, one at a time at true size, and scores each 1 (bad)
.. 5 (excellent) by a button or the keys 1-5. Nothing on the page, in a URL or in a header names
the method. Each rating is committed to SQLite (WAL mode) when it is given, so a killed server
loses nothing and a restart on the same ``--db`` continues the same study; a rater who comes back
in the same browser continues where they stopped. A rater is stored with their first rating (a
visit alone stores nothing). The nearest-neighbour upscale and the HR image are calibration
anchors (``--anchors``): taken from the folder when there (``<image>_nearest.png``,
``<image>_hr.png``), otherwise made from the HR test set given by ``--set``.

An item whose file is deleted or changed is *retired* (on ``serve``'s start, and as soon as the
page fails to load it): it is no longer shown, its ratings are kept and reported apart, and a
changed file is a new item. ``--db`` must be a database of this tool (or a new file): any other
SQLite file is refused before anything is written to it. Only requests addressed to the served
host names are answered (no DNS rebinding).

``report`` reads the database only and writes the MOS per method (overall and per image) with
a 95% confidence interval and the numbers of raters and ratings, a Wilcoxon signed-rank test on
per-rater means between each pair of methods rated by at least :data:`MIN_RATERS_FOR_TESTS`
raters (see :func:`pairwise_tests`), and the retired items, as Markdown and CSV, and a figure;
all files are replaced together or not at all.
"""
import argparse
import contextlib
import csv
import errno
import hashlib
import io
import ipaddress
import math
import os
import random
import re
import secrets
import socket
import sqlite3
import sys
import time
from collections import namedtuple
from datetime import datetime, timezone
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
HTTP_DEFAULT_PORT = 80      # a browser leaves this port out of the Host header
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")
"""Host names always served (with the port): this machine's own."""
WILDCARD_HOSTS = ("0.0.0.0", "::")
"""``--host`` values that listen on every address: then this machine's addresses and name are
served too."""
ANCHOR_METHODS = ("nearest", "hr")
"""Calibration anchors: nearest-neighbour upscale of the LR image (worst) and the HR (best)."""
ANCHOR_NAMES = {"nearest": "nearest-neighbour upscale", "hr": "HR image"}
DEFAULT_ANCHORS = ",".join(ANCHOR_METHODS)
IMAGE_SUFFIX = ".png"
SET_EXTENSIONS = (".png", ".bmp", ".jpg", ".jpeg", ".tif", ".tiff")

COOKIE = "mos_rater"
COOKIE_MAX_AGE_S = 365 * 24 * 3600
TOKEN_BYTES = 32          # rater token: 256 random bits (secrets.token_urlsafe)
TOKEN_RE = re.compile(r"[A-Za-z0-9_-]{%d}" % math.ceil(TOKEN_BYTES * 8 / 6))   # 6 bits a char
"""A rater token as ``secrets.token_urlsafe(TOKEN_BYTES)`` writes it (base64url, no padding)."""
ITEM_ID_BYTES = 12        # item id: 96 random bits, hex
ITEM_ID_RE = re.compile(r"[0-9a-f]{%d}" % (2 * ITEM_ID_BYTES))
MAX_REQUEST_BYTES = 1024  # a rating is ~60 bytes of JSON; anything larger is refused (413)
SQLITE_BUSY_TIMEOUT_MS = 10_000
STORE_FAILED_STATUS = 503  # the database or its disk failed (e.g. full): try again later
CONFIDENCE = 0.95
MIN_RATERS_FOR_TESTS = 5
"""The fewest raters (who rated both methods) a significance test between two methods is run on:
below that a p-value would rest on too few people to say anything about raters in general."""

RETIRED_MISSING = "missing"   # the item's file is gone (or no longer part of the study)
RETIRED_CHANGED = "changed"   # the item's file has other content now (a new item has it)
WITHDRAWN = "this image was withdrawn from the study (its file is gone or changed)"


# ----------------------------------------------------------------------------------------------
# The store
# ----------------------------------------------------------------------------------------------

APPLICATION_ID = int.from_bytes(b"SRmo", "big")
"""``PRAGMA application_id`` of a study database (the ASCII bytes "SRmo"): marks the file as
this tool's, beside ``PRAGMA user_version`` = :data:`SCHEMA_VERSION`."""
SCHEMA_VERSION = 1

ITEMS_TABLE = f"""CREATE TABLE IF NOT EXISTS {{name}} (
    id TEXT PRIMARY KEY, image TEXT NOT NULL, method TEXT NOT NULL, path TEXT NOT NULL,
    sha256 TEXT, added REAL NOT NULL, retired REAL,
    retired_why TEXT CHECK (retired_why IN ('{RETIRED_MISSING}', '{RETIRED_CHANGED}')),
    CHECK ((retired IS NULL) = (retired_why IS NULL)));
"""
"""The items (one file's content each): ``sha256`` (hex) of the file's bytes, NULL only for an
item of a version-0 database until the next ``serve`` records it; ``retired`` (unix time) and
``retired_why`` (:data:`RETIRED_MISSING` / :data:`RETIRED_CHANGED`), NULL while current."""

SCHEMA = ITEMS_TABLE.format(name="items") + """
CREATE UNIQUE INDEX IF NOT EXISTS current_items ON items (image, method) WHERE retired IS NULL;
CREATE TABLE IF NOT EXISTS raters (token TEXT PRIMARY KEY, created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS ratings (
    rater TEXT NOT NULL REFERENCES raters(token), item TEXT NOT NULL REFERENCES items(id),
    score INTEGER NOT NULL CHECK (score BETWEEN 1 AND 5), created REAL NOT NULL,
    PRIMARY KEY (rater, item));
CREATE TABLE IF NOT EXISTS skips (
    rater TEXT NOT NULL, item TEXT NOT NULL REFERENCES items(id), created REAL NOT NULL,
    PRIMARY KEY (rater, item));
"""
"""Schema version :data:`SCHEMA_VERSION`. ``skips``: items a rater's browser could not show
(the rater moved on; not a rating, so no rater row is needed)."""

SCHEMA_V0 = """
CREATE TABLE IF NOT EXISTS items (
    id TEXT PRIMARY KEY, image TEXT NOT NULL, method TEXT NOT NULL, path TEXT NOT NULL,
    UNIQUE (image, method));
CREATE TABLE IF NOT EXISTS raters (token TEXT PRIMARY KEY, created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS ratings (
    rater TEXT NOT NULL REFERENCES raters(token), item TEXT NOT NULL REFERENCES items(id),
    score INTEGER NOT NULL CHECK (score BETWEEN 1 AND 5), created REAL NOT NULL,
    PRIMARY KEY (rater, item));
"""
"""The schema of the first ``mos.py`` (no application_id, user_version 0, no content hashes):
such a study is updated in place by :func:`open_db`, its ratings kept."""

NEW, CURRENT, VERSION_0 = "new", "current", "version 0"   # what check_db finds


def _tables(con):
    """``{table: (column, ...)}`` of the database of ``con`` (SQLite's own tables left out)."""
    names = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table' AND "
                                       "name NOT LIKE 'sqlite_%' ORDER BY name")]
    return {n: tuple(r[1] for r in con.execute(f'PRAGMA table_info("{n}")')) for n in names}


def _tables_of(schema):
    """The ``{table: columns}`` that ``schema`` (SQL text) creates."""
    con = sqlite3.connect(":memory:")
    con.executescript(schema)
    tables = _tables(con)
    con.close()
    return tables


def check_db(db_path):
    """What ``db_path`` is, found read-only before anything is written to it: :data:`NEW` (no
    file, an empty file, or an SQLite database without tables), :data:`CURRENT` (a study of
    this version) or :data:`VERSION_0` (a study of the first version). Anything else (another
    application's database, a newer study, not SQLite at all) -> ValueError, one line naming
    the file, which is left as it was."""
    path = Path(db_path)
    if not path.exists() or (path.is_file() and path.stat().st_size == 0):
        return NEW
    if not path.is_file():
        raise ValueError(f"--db {path}: not a file")
    try:
        con = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        try:
            app_id, version = (con.execute(f"PRAGMA {p}").fetchone()[0]
                               for p in ("application_id", "user_version"))
            found = _tables(con)
        finally:
            con.close()
    except sqlite3.OperationalError as e:          # locked, unreadable, an I/O error
        raise OSError(f"--db {path}: cannot be read ({e})") from None
    except sqlite3.DatabaseError as e:             # not an SQLite file at all
        raise ValueError(f"--db {path}: not a MOS study database ({e}); it was left as it "
                         f"was") from None
    if app_id == APPLICATION_ID and version > SCHEMA_VERSION:
        raise ValueError(f"--db {path}: a MOS study of a newer mos.py (schema version "
                         f"{version}; this one reads {SCHEMA_VERSION}); it was left as it was")
    if app_id == APPLICATION_ID and version == SCHEMA_VERSION and found == _tables_of(SCHEMA):
        return CURRENT
    if app_id == 0 and version == 0 and found == _tables_of(SCHEMA_V0):
        return VERSION_0
    if app_id == 0 and version == 0 and not found:
        return NEW
    what = "a damaged MOS study" if app_id == APPLICATION_ID else "not a MOS study database"
    raise ValueError(f"--db {path}: {what} (application_id {app_id}, tables: "
                     f"{', '.join(found) or 'none'}); it was left as it was: give another file")


def connect(db_path):
    """An sqlite3 connection to ``db_path`` in WAL mode, autocommit (each statement is its own
    committed transaction, unless in :func:`transaction`), foreign keys on, waiting for a busy
    writer instead of failing. Writes to the file: call :func:`check_db` first."""
    con = sqlite3.connect(db_path, timeout=SQLITE_BUSY_TIMEOUT_MS / 1000,
                          isolation_level=None, check_same_thread=False)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA foreign_keys=ON")
    con.execute("PRAGMA synchronous=FULL")
    return con


@contextlib.contextmanager
def transaction(con):
    """``with transaction(con):`` runs the block as one write transaction (``BEGIN IMMEDIATE``)
    of the autocommit connection ``con``: committed when the block ends, rolled back when it
    raises (or when the commit fails, e.g. on a full disk), so nothing is half-stored."""
    con.execute("BEGIN IMMEDIATE")
    try:
        yield con
        con.execute("COMMIT")
    except BaseException:
        if con.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                con.execute("ROLLBACK")
        raise


def _create_schema(con):
    """Inside a transaction: the tables of :data:`SCHEMA` that are missing, and the marks of a
    study of this version (application_id, user_version). Statement by statement:
    ``executescript`` would commit the transaction first."""
    for statement in SCHEMA.split(";"):
        if statement.strip():
            con.execute(statement)
    con.execute(f"PRAGMA application_id={APPLICATION_ID}")
    con.execute(f"PRAGMA user_version={SCHEMA_VERSION}")


def _update_version_0(con):
    """Bring a :data:`VERSION_0` study to :data:`SCHEMA_VERSION` in one transaction (SQLite's
    way of changing a table: make the new one, copy, drop, rename). Its items get no content
    hash: the next ``serve`` records the hash of the files then."""
    con.execute("PRAGMA foreign_keys=OFF")         # only outside a transaction
    try:
        with transaction(con):
            con.execute(ITEMS_TABLE.format(name="items_new"))
            con.execute("INSERT INTO items_new (id, image, method, path, added) "
                        "SELECT id, image, method, path, ? FROM items", (time.time(),))
            con.execute("DROP TABLE items")
            con.execute("ALTER TABLE items_new RENAME TO items")
            _create_schema(con)
            if con.execute("PRAGMA foreign_key_check").fetchone() is not None:
                raise ValueError("the study's ratings name unknown items: not updated")
    finally:
        con.execute("PRAGMA foreign_keys=ON")


def open_db(db_path):
    """Open the study database ``db_path`` (created when new, updated when of version 0);
    returns a connection. A database of another application -> ValueError before anything is
    written (see :func:`check_db`)."""
    db_path = Path(db_path)
    found = check_db(db_path)
    db_path.parent.mkdir(parents=True, exist_ok=True)
    con = connect(db_path)
    try:
        if found == NEW:
            with transaction(con):
                _create_schema(con)
        elif found == VERSION_0:
            _update_version_0(con)
    except BaseException:
        con.close()
        raise
    return con


def file_sha256(path):
    """The SHA-256 (64 hex digits) of the file ``path``'s bytes, or None when it cannot be
    read (gone, a folder, no permission)."""
    try:
        return utils.sha256_file(path)
    except OSError:
        return None


SYNC_OUTCOMES = ("kept", "added", "restored", RETIRED_MISSING, RETIRED_CHANGED)


def _sync_pair(con, image, method, path, sha, now):
    """Inside a transaction: make ``(image, method)``'s current item the file ``path`` of
    content ``sha`` (None: there is no such file now). An unchanged current item is kept (and
    gets ``path``); a current item of other content is retired, and the file's content becomes
    the current item: a retired item of the same content again, or a new one. Returns the list
    of outcomes (names of :data:`SYNC_OUTCOMES`)."""
    row = con.execute("SELECT id, sha256 FROM items WHERE image=? AND method=? AND retired IS "
                      "NULL", (image, method)).fetchone()
    if row is not None and sha is not None and row[1] in (None, sha):   # None: record it now
        con.execute("UPDATE items SET path=?, sha256=? WHERE id=?", (str(path), sha, row[0]))
        return ["kept"]
    outcomes = []
    if row is not None:
        why = RETIRED_MISSING if sha is None else RETIRED_CHANGED
        con.execute("UPDATE items SET retired=?, retired_why=? WHERE id=?", (now, why, row[0]))
        outcomes.append(why)
    if sha is None:
        return outcomes
    old = con.execute("SELECT id FROM items WHERE image=? AND method=? AND sha256=? AND retired "
                      "IS NOT NULL ORDER BY retired DESC LIMIT 1", (image, method, sha)).fetchone()
    if old is not None:
        con.execute("UPDATE items SET retired=NULL, retired_why=NULL, path=? WHERE id=?",
                    (str(path), old[0]))
        return outcomes + ["restored"]
    con.execute("INSERT INTO items (id, image, method, path, sha256, added) VALUES (?,?,?,?,?,?)",
                (secrets.token_hex(ITEM_ID_BYTES), image, method, str(path), sha, now))
    return outcomes + ["added"]


def sync_items(con, files):
    """Make the study's current items the files ``{(image, method): path}``, by content: a pair
    whose file is unchanged keeps its item (so a restart continues the same study) and gets the
    current path; a current item whose file is not in ``files`` (or unreadable) is retired as
    :data:`RETIRED_MISSING`; one whose file changed is retired as :data:`RETIRED_CHANGED` and
    the new content is a new item. Retired items keep their ratings. One transaction.

    Returns ``{outcome: count}`` over :data:`SYNC_OUTCOMES` (``restored``: a file back to the
    content of a retired item revives that item)."""
    hashes = {key: file_sha256(path) for key, path in files.items()}    # before locking
    counts = dict.fromkeys(SYNC_OUTCOMES, 0)
    now = time.time()
    with transaction(con):
        current = {(i, m): p for i, m, p in con.execute(
            "SELECT image, method, path FROM items WHERE retired IS NULL")}
        for image, method in sorted(set(files) | set(current)):
            key = (image, method)
            path = files.get(key, current.get(key))
            for outcome in _sync_pair(con, image, method, path, hashes.get(key), now):
                counts[outcome] += 1
    return counts


def recheck_items(con):
    """Check the files of all current items again, by their stored paths (the server does when
    an image cannot be served or shown): an item whose file is gone or changed is retired at
    once, for every rater, as :func:`sync_items` does (a changed file becomes a new item).
    Returns the number of items retired."""
    rows = con.execute("SELECT image, method, path, sha256 FROM items WHERE retired IS NULL")
    stale = []
    for image, method, path, recorded in rows.fetchall():
        sha = file_sha256(path)                                       # before locking
        if sha is None or recorded not in (None, sha):
            stale.append((image, method, path, sha))
    if stale:
        now = time.time()
        with transaction(con):
            for image, method, path, sha in stale:
                _sync_pair(con, image, method, path, sha, now)
    return len(stale)


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
    is the text after the last underscore, as ``report.compare_on_set`` names them; methods and
    the suffix in any case). Two files whose names differ only in case (``x_SRGAN.png``,
    ``x_srgan.png``) -> ValueError naming both: which one to rate is not for this tool to
    guess (and a case-insensitive disk could not even hold both)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"--images {folder}: no such folder")
    found, by_folded_name = {}, {}
    for path in sorted(folder.iterdir()):
        stem = path.name[:-len(IMAGE_SUFFIX)]
        if path.is_file() and path.name.lower().endswith(IMAGE_SUFFIX) and "_" in stem.strip("_"):
            twin = by_folded_name.setdefault(path.name.lower(), path)
            if twin is not path:
                raise ValueError(f"--images {folder}: {twin.name} and {path.name} differ only in "
                                 f"case; remove or rename one of them")
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


def create_app(db_path, host=DEFAULT_HOST, port=DEFAULT_PORT):
    """The Flask app of the study in ``db_path`` (made by ``open_db`` + ``sync_items``) served on
    ``host``:``port`` (requests for other hosts are refused, see :func:`served_hosts`): the page,
    its static files, the images by opaque id, and the API routes (:func:`_add_routes`)."""
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
    _add_routes(app)
    return app


def _check_host():
    if request.headers.get("Host", "").lower() not in current_app.config["MOS_HOSTS"]:
        raise Refused(400, "unknown Host: open the study at the address the organiser gave")


FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


def _store_failed(exc):
    """A database or disk failure (sqlite3.Error, OSError; e.g. a full disk): one line on the
    console, a short JSON error for the page, HTTP :data:`STORE_FAILED_STATUS`. Whatever the
    request was writing is rolled back (:func:`transaction`); nothing stored before is touched."""
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


def _add_routes(app):
    """The study's routes: ``/`` (the page; gives a new rater's cookie), ``/static/<name>``,
    ``/image/<item>``, ``GET /api/next``, ``POST /api/rate`` (JSON ``{item, score}``) and
    ``POST /api/skip`` (JSON ``{item}``: the page could not show it)."""
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


def _count(con, table, where=""):
    return con.execute(f"SELECT COUNT(*) FROM {table} {where}").fetchone()[0]


def serve(args):
    """``mos.py serve``: prepare the study in ``--db`` and serve it until Ctrl-C."""
    from werkzeug.serving import make_server

    port = port_number(args.port)
    anchors = parse_anchors(args.anchors)
    check_db(args.db)                  # another application's file: refused, left as it was
    files, notes = study_files(args.images, anchors, args.set)
    check_listen(args.host, port)
    for note in notes:
        print(f"{PROG}: warning: {note}", file=sys.stderr)
    con = open_db(args.db)
    try:
        counts = sync_items(con, files)
        items, retired, raters, ratings = (
            _count(con, "items", "WHERE retired IS NULL"),
            _count(con, "items", "WHERE retired IS NOT NULL"),
            _count(con, "raters"), _count(con, "ratings"))
    finally:
        con.close()
    images = len({i for i, _ in files})
    print(f"study {args.db}: {items} items ({images} images x {len({m for _, m in files})} "
          f"methods here, {counts['added'] + counts['restored']} new), {raters} raters, "
          f"{ratings} ratings so far")
    if counts[RETIRED_MISSING] or counts[RETIRED_CHANGED]:
        print(f"{PROG}: note: retired {counts[RETIRED_MISSING]} items whose file is gone and "
              f"{counts[RETIRED_CHANGED]} whose file changed (a changed file is a new item); "
              f"their ratings are kept and reported apart", file=sys.stderr)
    if retired:
        print(f"{retired} retired items in all (not shown to raters)")
    server = make_server(args.host, port, create_app(args.db, args.host, port), threaded=True)
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

Rating = namedtuple("Rating", "rater image method score item retired why")
"""One rating: rater token, image, method, score 1..5, item id, and the item's retirement
(unix time and :data:`RETIRED_MISSING` / :data:`RETIRED_CHANGED`; None, None while current)."""


def load_ratings(db_path):
    """Every rating of the study in ``db_path`` as :class:`Rating` (read only: the file is not
    changed, a version-0 study is read as it is). No file, not a study, no rating -> one-line
    FileNotFoundError / ValueError."""
    path = Path(db_path)
    if not path.is_file():
        raise FileNotFoundError(f"--db {db_path}: no such file")
    found = check_db(path)
    if found == NEW:
        raise ValueError(f"--db {db_path}: not a MOS study database (no tables)")
    retired = "i.retired, i.retired_why" if found == CURRENT else "NULL, NULL"
    try:
        con = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        try:
            rows = con.execute(f"SELECT r.rater, i.image, i.method, r.score, i.id, {retired} "
                               f"FROM ratings r JOIN items i ON i.id = r.item "
                               f"ORDER BY r.created, r.rater, i.id").fetchall()
        finally:
            con.close()
    except sqlite3.OperationalError as e:
        raise OSError(f"--db {db_path}: cannot be read ({e})") from None
    except sqlite3.DatabaseError as e:
        raise ValueError(f"--db {db_path}: a damaged MOS study database ({e})") from None
    if not rows:
        raise ValueError(f"--db {db_path}: no ratings yet")
    return [Rating(*r) for r in rows]


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


def _stats_of(entries):
    """``{"mos", "ci", "n", "raters", "counts"}`` of ``[(rater, score)]``."""
    scores = [s for _, s in entries]
    mean, half, n = mean_ci(scores)
    return {"mos": mean, "ci": half, "n": n, "raters": len({r for r, _ in entries}),
            "counts": [scores.count(s) for s in SCORES]}


def summary(rows):
    """Per method, and per (image, method), of ``rows`` (``(rater, image, method, score, ...)``):
    ``{"mos", "ci", "n" (ratings), "raters", "counts"}`` (counts of each score 1..5). Returns
    ``(by_method, by_image)``."""
    per_method, per_image = {}, {}
    for rater, image, method, score, *_ in rows:
        per_method.setdefault(method, []).append((rater, score))
        per_image.setdefault((image, method), []).append((rater, score))
    return ({m: _stats_of(per_method[m]) for m in method_order(per_method)},
            {k: _stats_of(v) for k, v in sorted(per_image.items())})


def retired_summary(ratings):
    """The ratings of retired items, per item: ``[{"image", "method", "why", "retired" (unix
    time), "mos", "ci", "n", "raters", "counts"}]`` in order of retirement."""
    per_item = {}
    for r in ratings:
        if r.retired is not None:
            per_item.setdefault((r.retired, r.image, r.method, r.why), []).append(
                (r.rater, r.score))
    return [{"image": image, "method": method, "why": why, "retired": when, **_stats_of(v)}
            for (when, image, method, why), v in sorted(per_item.items())]


def holm(pvalues):
    """Holm-Bonferroni adjusted p-values (same order as ``pvalues``)."""
    order = sorted(range(len(pvalues)), key=lambda i: pvalues[i])
    adjusted, running = [0.0] * len(pvalues), 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(pvalues) - rank) * pvalues[i]))
        adjusted[i] = running
    return adjusted


def pairwise_tests(rows, min_raters=MIN_RATERS_FOR_TESTS):
    """A two-sided Wilcoxon signed-rank test between every pair of methods, at the rater level.

    Why this test: the ratings of one rater are not independent of each other (a harsh rater
    scores everything low), so a test that took every rating as an independent sample would
    count one person's opinion many times over (one rater's 25 ratings would give a "p = 0.004"
    that says nothing about raters in general). The unit is therefore the rater: each rater who
    rated both methods on at least one common image gives one pair of numbers, their mean score
    of A and of B over the images they rated with both (same images: no image effect). The
    signed-rank test asks whether the differences are centred on 0, using their ranks only (the
    scores are ordinal; no normality assumed); zero differences are left out, as Wilcoxon's
    original method does (``zero_method="wilcox"``). A pair with fewer than ``min_raters`` (int
    >= 1, default :data:`MIN_RATERS_FOR_TESTS`) such raters is not tested: ``w``, ``p`` and
    ``p_holm`` are None. The p-values of the pairs tested are also given Holm-adjusted.

    ``rows``: ``(rater, image, method, score, ...)`` with at most one score per (rater, image,
    method). Returns ``[{"a", "b", "raters", "ratings", "mean_a", "mean_b", "diff", "w", "p",
    "p_holm"}]``: raters = number of raters paired, ratings = the ratings their means rest on,
    mean_a / mean_b = the average of their means, diff = mean_a - mean_b (NaN when no rater
    rated both), w = the signed-rank statistic.
    """
    from scipy import stats

    scores, methods = {}, set()
    for rater, image, method, score, *_ in rows:
        scores.setdefault((rater, method), {})[image] = score
        methods.add(method)
    raters = sorted({rater for rater, _ in scores})
    tests = []
    for a, b in combinations(method_order(methods), 2):
        means_a, means_b, n_ratings = [], [], 0
        for rater in raters:
            of_a, of_b = scores.get((rater, a), {}), scores.get((rater, b), {})
            common = sorted(of_a.keys() & of_b.keys())
            if common:
                means_a.append(sum(of_a[i] for i in common) / len(common))
                means_b.append(sum(of_b[i] for i in common) / len(common))
                n_ratings += 2 * len(common)
        n = len(means_a)
        test = {"a": a, "b": b, "raters": n, "ratings": n_ratings,
                "mean_a": sum(means_a) / n if n else math.nan,
                "mean_b": sum(means_b) / n if n else math.nan, "w": None, "p": None,
                "p_holm": None}
        test["diff"] = test["mean_a"] - test["mean_b"]
        if n >= min_raters:
            if all(x == y for x, y in zip(means_a, means_b)):   # no difference at all
                test["w"], test["p"] = 0.0, 1.0
            else:
                res = stats.wilcoxon(means_a, means_b, zero_method="wilcox",
                                     alternative="two-sided")
                test["w"], test["p"] = float(res.statistic), float(res.pvalue)
        tests.append(test)
    tested = [t for t in tests if t["p"] is not None]
    for test, adjusted in zip(tested, holm([t["p"] for t in tested])):
        test["p_holm"] = adjusted
    return tests


# ----------------------------------------------------------------------------------------------
# report: files
# ----------------------------------------------------------------------------------------------

def _fmt(value, digits=2):
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) \
        else f"{value:.{digits}f}"


P_FLOOR = 0.001   # smaller p-values are written "<0.001"


def _p(value):
    return "–" if value is None else f"<{P_FLOOR}" if value < P_FLOOR else f"{value:.3f}"


def _utc(unix_time):
    return datetime.fromtimestamp(unix_time, timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def _table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _plural(n, word):
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def anchor_note(by_method):
    """One sentence: which calibration anchors were rated, with how many ratings and raters
    (or that none was)."""
    rated = [a for a in ANCHOR_METHODS if a in by_method]
    if not rated:
        return ("No calibration anchor (nearest-neighbour upscale, HR image) was rated: the MOS "
                "values are not tied to the ends of the scale.")
    parts = [f"{ANCHOR_NAMES[a]} `{a}` ({_plural(by_method[a]['n'], 'rating')} by "
             f"{_plural(by_method[a]['raters'], 'rater')})" for a in rated]
    missing = [f"{ANCHOR_NAMES[a]} `{a}`" for a in ANCHOR_METHODS if a not in rated]
    return (f"Calibration anchors rated: {', '.join(parts)}"
            + (f"; not rated: {', '.join(missing)}" if missing else "") + ".")


def report_markdown(by_method, by_image, tests, raters, retired=()):
    """The report's Markdown: overall MOS table, per-image table, pairwise tests and the
    retired items (``retired``: :func:`retired_summary`); ``raters``: raters of the current
    items (int)."""
    pct = int(CONFIDENCE * 100)
    overall = _table(["method", "MOS", f"{pct}% CI", "ratings", "raters"]
                     + [str(s) for s in SCORES],
                     [[m, _fmt(s["mos"]), f"± {_fmt(s['ci'])}", s["n"], s["raters"]]
                      + s["counts"] for m, s in by_method.items()])
    methods = list(by_method)
    images = sorted({i for i, _ in by_image})
    per_image = _table(["image"] + methods, [
        [image] + [f"{_fmt(by_image[(image, m)]['mos'])} ± {_fmt(by_image[(image, m)]['ci'])} "
                   f"(n={by_image[(image, m)]['n']})" if (image, m) in by_image else "–"
                   for m in methods] for image in images])
    pairs = _table(["A", "B", "raters", "ratings", "mean A", "mean B", "A − B", "W", "p",
                    "p (Holm)"],
                   [[t["a"], t["b"], t["raters"], t["ratings"], _fmt(t["mean_a"]),
                     _fmt(t["mean_b"]), _fmt(t["diff"]), _fmt(t["w"], 1),
                     _p(t["p"]) if t["p"] is not None else
                     f"not tested ({t['raters']} < {MIN_RATERS_FOR_TESTS} raters)",
                     _p(t["p_holm"])] for t in tests])
    if not any(t["p"] is not None for t in tests):
        pairs += (f"\n\nNo pair is tested: no two methods were rated by {MIN_RATERS_FOR_TESTS} "
                  f"or more of the same raters ({_plural(raters, 'rater')} in all). The MOS "
                  f"above describe these raters only.")
    n_retired = sum(r["n"] for r in retired)
    retired_table = _table(
        ["image", "method", "retired", "why", "MOS", "ratings", "raters"],
        [[r["image"], r["method"], _utc(r["retired"]), r["why"], _fmt(r["mos"]), r["n"],
          r["raters"]] for r in retired]) if retired else "None: every rated item is current."
    return "\n\n".join([
        "# Mean opinion score (MOS)",
        f"{_plural(sum(s['n'] for s in by_method.values()), 'rating')} by "
        f"{_plural(raters, 'rater')} of {_plural(len(images), 'image')}; scores 1 (bad) .. 5 "
        f"(excellent), methods hidden from the raters, each rater in their own random order (MOS "
        f"protocol of Ledig et al., CVPR 2017). {anchor_note(by_method)}"
        + (f" Not counted here: {_plural(n_retired, 'rating')} of "
           f"{_plural(len(retired), 'retired item')} (see Retired items)." if retired else ""),
        f"## Per method\n\nMOS ± half width of the {pct}% Student-t confidence interval over the "
        f"ratings; \"ratings\" and \"raters\" say how many scores and how many people each MOS "
        f"rests on. The interval treats the ratings as independent, which the ratings of one "
        f"rater are not: with few raters it is too narrow. The last columns count each "
        f"score.\n\n{overall}",
        f"## Per image\n\nMOS ± half width of the {pct}% interval (n = ratings, one per "
        f"rater).\n\n{per_image}",
        f"## Pairwise tests\n\nTwo-sided Wilcoxon signed-rank test on the raters' own mean "
        f"scores: each rater who rated both A and B gives one pair (their mean of A and of B "
        f"over the images they rated with both), so a rater counts once, not once per rating. "
        f"Rank-based (ordinal scores, no normality assumed); zero differences left out. Run "
        f"only when at least {MIN_RATERS_FOR_TESTS} raters rated both methods; p (Holm) is "
        f"adjusted for the number of pairs tested. \"ratings\": the ratings the raters' means "
        f"rest on.\n\n{pairs}",
        f"## Retired items\n\nItems taken out of the study after they were rated, because "
        f"their file was deleted or left out of the study (`{RETIRED_MISSING}`) or changed "
        f"(`{RETIRED_CHANGED}`: the new content is a new item); their ratings are kept here and "
        f"left out of everything above.\n\n{retired_table}",
    ]) + "\n"


def _csv(header, rows):
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buf.getvalue()


def report_csvs(by_method, by_image, tests, retired=()):
    """``{file name: CSV text}``: per method, per image, pairwise tests (p, w, p_holm empty when
    not tested), retired items (full precision)."""
    counts = [f"n_{s}" for s in SCORES]
    test_keys = ("a", "b", "raters", "ratings", "mean_a", "mean_b", "diff", "w", "p", "p_holm")
    return {
        "mos_methods.csv": _csv(["method", "mos", "ci95", "n", "raters"] + counts,
                                [[m, s["mos"], s["ci"], s["n"], s["raters"]] + s["counts"]
                                 for m, s in by_method.items()]),
        "mos_images.csv": _csv(["image", "method", "mos", "ci95", "n", "raters"] + counts,
                               [[i, m, s["mos"], s["ci"], s["n"], s["raters"]] + s["counts"]
                                for (i, m), s in by_image.items()]),
        "mos_tests.csv": _csv(list(test_keys), [["" if t[k] is None else t[k] for k in test_keys]
                                                for t in tests]),
        "mos_retired.csv": _csv(["image", "method", "retired_utc", "why", "mos", "ci95", "n",
                                 "raters"] + counts,
                                [[r["image"], r["method"], _utc(r["retired"]), r["why"], r["mos"],
                                  r["ci"], r["n"], r["raters"]] + r["counts"] for r in retired]),
    }


FIGURE_SIZE = (10, 4)
FIGURE_DPI = 120
SCORE_COLOURS = ("#d7191c", "#fdae61", "#ffffbf", "#a6d96a", "#1a9641")


def report_figure(by_method, raters):
    """The figure as PNG bytes: MOS with its confidence interval per method (left) and the
    distribution of the scores per method as stacked shares (right), as in the SRGAN paper's
    figures; ``raters`` (int) goes in the title."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods = list(by_method)
    x = range(len(methods))
    fig, (left, right) = plt.subplots(1, 2, figsize=FIGURE_SIZE)
    try:
        left.errorbar(x, [by_method[m]["mos"] for m in methods],
                      yerr=[0 if math.isnan(by_method[m]["ci"]) else by_method[m]["ci"]
                            for m in methods], fmt="o", capsize=5)
        left.set(xticks=list(x), xticklabels=methods, ylim=(1, 5), ylabel="MOS",
                 title=f"MOS with {int(CONFIDENCE * 100)}% CI ({_plural(raters, 'rater')})")
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
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=FIGURE_DPI)
    finally:
        plt.close(fig)
    return buf.getvalue()


def write_together(files, what="report"):
    """Write ``{path: bytes}`` so that a failure (a full disk, no permission) leaves all the
    previous files as they were: each file is written and fsynced to a temporary name beside it
    (:func:`utils.atomic_write`) and only when every one is on disk are they renamed over the old
    ones (renames need no space). A failure -> ``utils.WriteError`` naming the file, and no
    temporary file is left."""
    with contextlib.ExitStack() as stack:
        for path, data in files.items():
            f = stack.enter_context(utils.atomic_write(path, "wb", what=what))
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    return list(files)


def write_report(db_path, out_dir):
    """Write ``mos.md``, the CSVs and ``mos.png`` of the study ``db_path`` into ``out_dir``,
    all rendered in memory first and then replaced together (:func:`write_together`); returns
    the paths."""
    ratings = load_ratings(db_path)
    current = [r for r in ratings if r.retired is None]
    if not current:
        raise ValueError(f"--db {db_path}: no ratings of current items yet (only "
                         f"{_plural(len(ratings), 'rating')} of retired items)")
    by_method, by_image = summary(current)
    tests = pairwise_tests(current)
    retired = retired_summary(ratings)
    raters = len({r.rater for r in current})
    texts = {"mos.md": report_markdown(by_method, by_image, tests, raters, retired)}
    texts.update(report_csvs(by_method, by_image, tests, retired))
    files = {Path(out_dir) / name: text.encode("utf-8") for name, text in texts.items()}
    files[Path(out_dir) / "mos.png"] = report_figure(by_method, raters)
    return write_together(files)


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
