"""The MOS study's SQLite store (``mos.py``'s ``--db``): its schema, opening and updating it, the
study's items, and reading the ratings (the rating requests' own queries are in ``mos_app.py``).

- the schema and its marks (:data:`SCHEMA`, ``PRAGMA application_id`` / ``user_version``), and
  the check of a ``--db`` file before anything is written to it (:func:`check_db`);
- opening it: connections in WAL mode (:func:`connect`), write transactions
  (:func:`transaction`), creation and the update of a first-version study in place
  (:func:`open_db`);
- the study's items, one per file content: syncing them with the image files on ``serve``'s
  start, retiring an item whose file is gone or changed (:func:`sync_items`,
  :func:`recheck_items`), by the files' SHA-256 (:func:`file_sha256`);
- reading every rating for the report, read-only (:func:`load_ratings`).
"""
import contextlib
import secrets
import sqlite3
import time
from collections import namedtuple
from pathlib import Path

import utils

SCORES = (1, 2, 3, 4, 5)
"""The rating scale (ints): 1 = bad quality .. 5 = excellent (the SRGAN paper's scale; the
``ratings`` table accepts these only)."""
ITEM_ID_BYTES = 12        # item id: 96 random bits, hex
SQLITE_BUSY_TIMEOUT_MS = 10_000
RETIRED_MISSING = "missing"   # the item's file is gone (or no longer part of the study)
RETIRED_CHANGED = "changed"   # the item's file has other content now (a new item has it)

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

