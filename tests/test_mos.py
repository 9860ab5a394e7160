"""The blind MOS study (``mos.py`` and its ``mos_*.py`` modules): the rating API through Flask's
test client (blind, random order per rater, at most once per pair, resume after a restart,
refused requests leave the database unchanged, deleted or changed images withdrawn, served host
names only, a full disk), a real server killed in the middle of a stream of ratings from
concurrent raters, the command line's bad input (a foreign database, names differing in case),
and the report's statistics against hand-computed values and its files on a failing disk.
"""
import errno
import http.client
import json
import math
import os
import resource
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from flask.testing import FlaskClient
from PIL import Image
from scipy import stats

import mos
import mos_app
import mos_db
import mos_images
import mos_report
import mos_stats

ROOT = Path(__file__).resolve().parent.parent
IMAGES = ("baby", "bird", "butterfly")
METHODS = ("bicubic", "srresnet", "srgan")
HR_SIZE = (24, 32)             # (H, W), a multiple of the x4 scale
T_975_DF4 = 2.7764451051977987  # Student t quantile 0.975 with 4 degrees of freedom (tables)


def _png(path, rng, size=HR_SIZE):
    Image.fromarray(rng.integers(0, 256, size + (3,), dtype=np.uint8)).save(path)


@pytest.fixture
def study(tmp_path):
    """A folder of ``<image>_<method>.png`` with an HR set, prepared as ``serve`` does
    (anchors made from the set); returns ``(images_dir, db_path)``."""
    rng = np.random.default_rng(0)
    images, hr_set = tmp_path / "images", tmp_path / "set"
    images.mkdir()
    hr_set.mkdir()
    for image in IMAGES:
        _png(hr_set / f"{image}.png", rng)
        for method in METHODS:
            _png(images / f"{image}_{method}.png", rng)
    files, notes = mos_images.study_files(images, mos_images.ANCHOR_METHODS, hr_set)
    assert notes == []
    db = tmp_path / "mos.sqlite"
    con = mos_db.open_db(db)
    mos_db.sync_items(con, files)
    con.close()
    return images, db


SERVED = f"localhost:{mos_app.DEFAULT_PORT}"   # the Host a browser on this machine sends


class _LocalClient(FlaskClient):
    """Flask's test client addressing the study as a browser on this machine does (Host
    ``localhost:8000``; Flask's default, ``localhost`` without the port, is not served)."""

    def open(self, *args, **kwargs):
        kwargs.setdefault("base_url", f"http://{SERVED}/")
        return super().open(*args, **kwargs)


def _app(db):
    """The app of ``db`` (a server start on the default host and port), :class:`_LocalClient`."""
    app = mos_app.create_app(db)
    app.test_client_class = _LocalClient
    return app


def _client(db):
    """A new app on ``db`` (a server restart) and a client that has opened the start page."""
    client = _app(db).test_client()
    assert client.get("/").status_code == 200
    return client


def _rate(client, item, score):
    return client.post("/api/rate", json={"item": item, "score": score})


def _ratings(db):
    con = sqlite3.connect(db)
    rows = sorted(con.execute("SELECT rater, item, score FROM ratings"))
    con.close()
    return rows


def _query(db, sql, *args):
    con = sqlite3.connect(db)
    rows = con.execute(sql, args).fetchall()
    con.close()
    return rows


def _item(db, image, method):
    """The current item id of ``(image, method)``."""
    return _query(db, "SELECT id FROM items WHERE image=? AND method=? AND retired IS NULL",
                  image, method)[0][0]


def _rate_all(client, score=3):
    """Rate every item; returns the ids in the order the study showed them."""
    shown = []
    state = client.get("/api/next").get_json()
    while state["item"] is not None:
        shown.append(state["item"])
        response = _rate(client, state["item"], score)
        assert response.status_code == 200
        state = response.get_json()
    return shown


# ----------------------------------------------------------------------------------------------
# The study's files
# ----------------------------------------------------------------------------------------------

def test_anchors_made_from_the_set(study):
    images, db = study
    hr = np.asarray(Image.open(images / "baby_hr.png"))
    nearest = np.asarray(Image.open(images / "baby_nearest.png"))
    assert hr.shape == nearest.shape == HR_SIZE + (3,)
    # pixel repetition: every 4x4 block of the nearest anchor is one colour
    blocks = nearest.reshape(HR_SIZE[0] // 4, 4, HR_SIZE[1] // 4, 4, 3)
    assert (blocks == blocks[:, :1, :, :1]).all()
    con = sqlite3.connect(db)
    assert con.execute("SELECT COUNT(*) FROM items").fetchone()[0] == \
        len(IMAGES) * (len(METHODS) + len(mos_images.ANCHOR_METHODS))


def test_nearest_anchor_uses_the_sets_own_lr(tmp_path):
    rng = np.random.default_rng(2)
    images, hr_dir = tmp_path / "images", tmp_path / "Set5" / "HR"
    lr_dir = tmp_path / "Set5" / "LR_bicubic" / "X4"
    for d in (images, hr_dir, lr_dir):
        d.mkdir(parents=True)
    _png(hr_dir / "baby.png", rng)
    _png(images / "baby_srgan.png", rng)
    lr = rng.integers(0, 256, (HR_SIZE[0] // 4, HR_SIZE[1] // 4, 3), dtype=np.uint8)
    Image.fromarray(lr).save(lr_dir / "babyx4.png")
    files, _ = mos_images.study_files(images, mos_images.ANCHOR_METHODS,
                                      tmp_path / "Set5")   # the set root
    nearest = np.asarray(Image.open(files[("baby", "nearest")]))
    np.testing.assert_array_equal(nearest, np.repeat(np.repeat(lr, 4, axis=0), 4, axis=1))
    np.testing.assert_array_equal(np.asarray(Image.open(files[("baby", "hr")])),
                                  np.asarray(Image.open(hr_dir / "baby.png")))


def test_anchor_not_listed_is_left_out_and_missing_one_is_noted(study):
    images, _ = study
    files, _ = mos_images.study_files(images, ("nearest",))
    assert {m for _, m in files} == set(METHODS) | {"nearest"}
    (images / "bird_nearest.png").unlink()
    _, notes = mos_images.study_files(images, ("nearest",))
    assert len(notes) == 1 and "nearest" in notes[0]


def test_wal_mode_is_on(study):
    _, db = study
    con = sqlite3.connect(db)
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


# ----------------------------------------------------------------------------------------------
# The API
# ----------------------------------------------------------------------------------------------

def test_nothing_served_names_the_method_or_the_file(study):
    client = _client(study[1])
    words = METHODS + mos_images.ANCHOR_METHODS + IMAGES + (".png",)
    responses = [client.get("/"), client.get("/static/app.js"), client.get("/static/app.css")]
    state = client.get("/api/next").get_json()
    for _ in range(5):
        responses.append(client.get(f"/image/{state['item']}"))
        r = _rate(client, state["item"], 4)
        responses.append(r)
        state = r.get_json()
    for r in responses:
        assert r.status_code == 200
        headers = "\n".join(f"{k}: {v}" for k, v in r.headers.items()).lower()
        text = headers + (r.get_data(as_text=True).lower() if r.mimetype != "image/png" else "")
        for word in words:
            if word != "hr" or r.mimetype == "application/json":   # "hr" is inside "href"
                assert word not in text, (r.request.path, word)
        assert "content-disposition" not in headers
        assert not any(word in r.request.path.lower() for word in words)


def test_image_is_the_file_at_true_size(study):
    images, db = study
    client = _client(db)
    con = sqlite3.connect(db)
    item, = con.execute("SELECT id FROM items WHERE image='bird' AND method='srgan'").fetchone()
    r = client.get(f"/image/{item}")
    assert r.mimetype == "image/png"
    assert r.data == (images / "bird_srgan.png").read_bytes()


def test_each_rater_rates_every_pair_once_in_their_own_order(study):
    _, db = study
    orders = [_rate_all(_client(db), score=s) for s in (1, 2, 3)]
    con = sqlite3.connect(db)
    all_ids = sorted(r[0] for r in con.execute("SELECT id FROM items"))
    for order in orders:
        assert sorted(order) == all_ids                       # every pair exactly once
    assert len({tuple(o) for o in orders}) == 3               # 15! orders: never equal by chance
    assert len(_ratings(db)) == 3 * len(all_ids)


def test_a_pair_is_rated_at_most_once(study):
    _, db = study
    client = _client(db)
    item = client.get("/api/next").get_json()["item"]
    assert _rate(client, item, 5).status_code == 200
    before = _ratings(db)
    again = _rate(client, item, 1)
    assert again.status_code == 409 and "already rated" in again.get_json()["error"]
    assert _ratings(db) == before and before[0][2] == 5


def test_restart_continues_where_the_rater_stopped(study):
    _, db = study
    client = _client(db)
    done = []
    for _ in range(4):
        item = client.get("/api/next").get_json()["item"]
        _rate(client, item, 2)
        done.append(item)
    cookie = client.get_cookie(mos_app.COOKIE).value
    restarted = _app(db).test_client()                        # a new server on the same DB
    restarted.set_cookie(mos_app.COOKIE, cookie)
    state = restarted.get("/api/next").get_json()
    assert state["done"] == 4 and state["total"] == 15
    assert state["item"] not in done
    rest = _rate_all(restarted)
    assert len(rest) == 11 and not set(rest) & set(done)
    # prepare the same folder again: the study keeps its ids, nothing is added or retired
    files, _ = mos_images.study_files(study[0], mos_images.ANCHOR_METHODS)
    con = mos_db.open_db(db)
    assert mos_db.sync_items(con, files) == {**dict.fromkeys(mos_db.SYNC_OUTCOMES, 0), "kept": 15}


def test_cookie_is_a_random_http_only_token(study):
    client = _client(study[1])
    header = client.get("/").headers.get("Set-Cookie")
    assert header is None                                     # known rater: no new token
    fresh = _app(study[1]).test_client()
    header = fresh.get("/").headers["Set-Cookie"]
    assert "HttpOnly" in header and "SameSite=Strict" in header
    assert len(fresh.get_cookie(mos_app.COOKIE).value) >= 40


def test_raters_are_separate_and_no_rating_is_ever_sent_back(study):
    _, db = study
    alice, bob = _client(db), _client(db)
    item = alice.get("/api/next").get_json()["item"]
    assert _rate(alice, item, 1).status_code == 200
    assert _rate(bob, item, 5).status_code == 200          # bob's own rating of the same pair
    assert sorted(s for _, _, s in _ratings(db)) == [1, 5]
    state = bob.get("/api/next").get_json()
    assert set(state) == {"item", "done", "skipped", "total"} and state["done"] == 1


def test_no_administrative_route():
    routes = {(r.rule, m) for r in mos_app.create_app(":memory:").url_map.iter_rules()
              for m in r.methods - {"HEAD", "OPTIONS"}}
    assert routes == {("/", "GET"), ("/static/<name>", "GET"), ("/image/<item>", "GET"),
                      ("/api/next", "GET"), ("/api/rate", "POST"), ("/api/skip", "POST")}


@pytest.mark.parametrize("body,status", [
    ({"score": 0}, 400), ({"score": 6}, 400), ({"score": -1}, 400), ({"score": "3"}, 400),
    ({"score": 3.0}, 400), ({"score": True}, 400), ({"score": None}, 400),
    ({"item": "0" * 24, "score": 3}, 404), ({"item": "../mos.py", "score": 3}, 404),
    ({"item": 7, "score": 3}, 404), ({"score": 3, "extra": 1}, 400), ([3], 400),
])
def test_bad_ratings_are_refused_and_change_nothing(study, body, status):
    _, db = study
    client = _client(db)
    item = client.get("/api/next").get_json()["item"]
    if isinstance(body, dict):
        body = {"item": item, **body}
    r = client.post("/api/rate", json=body)
    assert r.status_code == status and r.get_json()["error"]
    assert _ratings(db) == []


def test_malformed_oversized_and_cookieless_requests_are_refused(study):
    _, db = study
    client = _client(db)
    item = client.get("/api/next").get_json()["item"]
    ok = json.dumps({"item": item, "score": 3})
    cases = [
        (client.post("/api/rate", data="{not json", content_type="application/json"), 400),
        (client.post("/api/rate", data=ok, content_type="text/plain"), 415),
        (client.post("/api/rate", data=ok + " " * mos_app.MAX_REQUEST_BYTES,
                     content_type="application/json"), 413),
        (client.get("/api/rate"), 405),
        (_app(db).test_client().post("/api/rate", json=json.loads(ok)), 403),
        (_app(db).test_client().get("/api/next"), 403),
    ]
    other = _app(db).test_client()
    other.set_cookie(mos_app.COOKIE, "guessed-token")
    cases.append((other.post("/api/rate", json=json.loads(ok)), 403))
    for response, status in cases:
        assert response.status_code == status
    assert _ratings(db) == []


@pytest.mark.parametrize("path", [
    "/image/../mos.py", "/image/%2e%2e%2fmos.py", "/image/" + "0" * 24, "/image/baby_srgan.png",
    "/image/", "/images/", "/static/../mos.py", "/static/mos.py", "/baby_srgan.png",
])
def test_only_study_ids_are_served(study, path):
    r = _client(study[1]).get(path)
    assert r.status_code == 404
    assert b"PNG" not in r.data and b"import" not in r.data


# ----------------------------------------------------------------------------------------------
# Deleted and changed images, host names, raters stored on their first rating, a full disk
# ----------------------------------------------------------------------------------------------

STUDY_ITEMS_ALL = len(IMAGES) * (len(METHODS) + len(mos_images.ANCHOR_METHODS))


def _walk(client, limit=2 * STUDY_ITEMS_ALL):
    """Go through the study as the page does: show the next image; rate it (score 3) when it is
    served, else tell the server (``/api/skip``) and go on. Returns ``(rated ids, failed ids,
    final state)``; fails if the rater is still not done after ``limit`` steps (stuck)."""
    rated, failed = [], []
    state = client.get("/api/next").get_json()
    for _ in range(limit):
        if state["item"] is None:
            return rated, failed, state
        item = state["item"]
        if client.get(f"/image/{item}").status_code == 200:
            response = _rate(client, item, 3)
            rated.append(item)
        else:
            response = client.post("/api/skip", json={"item": item})
            failed.append(item)
        assert response.status_code == 200, response.get_json()
        state = response.get_json()
    pytest.fail(f"the rater is stuck: {len(rated)} rated, {len(failed)} failed, at {state}")


def test_deleted_images_are_withdrawn_and_the_rater_moves_on(study):
    images, db = study
    client = _client(db)
    early = _item(db, "baby", "srgan")
    assert _rate(client, early, 5).status_code == 200           # rated before the deletion
    srgan = {i for (i,) in _query(db, "SELECT id FROM items WHERE method='srgan'")}
    for path in images.glob("*_srgan.png"):                     # one method's images deleted
        path.unlink()
    assert client.get(f"/image/{_item(db, 'bird', 'srgan')}").status_code == 410
    rated, failed, state = _walk(client)     # one failure retired the method's items at once
    assert failed == [] and not set(rated) & srgan
    assert state == {"item": None, "done": STUDY_ITEMS_ALL - len(IMAGES), "skipped": 0,
                     "total": STUDY_ITEMS_ALL - len(IMAGES)}
    assert _query(db, "SELECT DISTINCT retired_why FROM items WHERE method='srgan'") == \
        [(mos_db.RETIRED_MISSING,)]
    assert _query(db, "SELECT COUNT(*) FROM items WHERE retired IS NOT NULL") == [(len(IMAGES),)]
    # the early rating is kept, and reported apart
    assert (client.get_cookie(mos_app.COOKIE).value, early, 5) in _ratings(db)
    # a retired item is neither served, nor handed out, nor rated
    other = _client(db)
    assert other.get(f"/image/{early}").status_code == 410
    assert _rate(other, early, 4).status_code == 410
    assert not set(_walk(other)[0]) & srgan


def test_a_changed_image_is_a_new_item_and_old_ratings_are_not_pooled(study, tmp_path):
    images, db = study
    client = _client(db)
    old = _item(db, "baby", "srgan")
    assert _rate(client, old, 1).status_code == 200
    _png(images / "baby_srgan.png", np.random.default_rng(9))     # regenerated, same name
    # the running server notices when the image is requested ...
    r = client.get(f"/image/{old}")
    assert r.status_code == 410 and "withdrawn" in r.get_json()["error"]
    new = _item(db, "baby", "srgan")
    assert new != old
    assert (_query(db, "SELECT retired_why FROM items WHERE id=?", old)
            == [(mos_db.RETIRED_CHANGED,)])
    assert client.get(f"/image/{new}").data == (images / "baby_srgan.png").read_bytes()
    # ... and a restart notices before anything is served (the same rater is asked again)
    _png(images / "bird_srgan.png", np.random.default_rng(10))
    files, _ = mos_images.study_files(images, mos_images.ANCHOR_METHODS)
    con = mos_db.open_db(db)
    counts = mos_db.sync_items(con, files)
    con.close()
    assert (counts["changed"], counts["added"], counts["kept"]) == (1, 1, STUDY_ITEMS_ALL - 1)
    assert _rate(client, new, 5).status_code == 200
    rated, _, state = _walk(client)
    assert state["done"] == STUDY_ITEMS_ALL and _item(db, "bird", "srgan") in rated
    out = tmp_path / "report"
    mos_report.write_report(db, out)
    methods = {r["method"]: r for r in _csv_rows(out / "mos_methods.csv")}
    assert (float(methods["srgan"]["mos"]), int(methods["srgan"]["n"])) == \
        (pytest.approx((5 + 3 + 3) / 3), 3)                      # the new baby_srgan: 5, not 1
    retired = _csv_rows(out / "mos_retired.csv")
    assert [(r["image"], r["method"], r["why"], r["n"], r["mos"]) for r in retired] == \
        [("baby", "srgan", "changed", "1", "1.0")]
    assert "1 rating of 1 retired item" in (out / "mos.md").read_text()


def test_a_file_back_to_its_old_content_brings_back_its_item(study):
    images, db = study
    path = images / "baby_srgan.png"
    original, old = path.read_bytes(), _item(db, "baby", "srgan")
    files, _ = mos_images.study_files(images, mos_images.ANCHOR_METHODS)
    con = mos_db.open_db(db)
    path.unlink()
    assert mos_db.sync_items(con, {k: p for k, p in files.items() if p != path})["missing"] == 1
    path.write_bytes(original)
    assert mos_db.sync_items(con, files)["restored"] == 1
    con.close()
    assert _item(db, "baby", "srgan") == old


def test_an_image_the_browser_cannot_show_is_skipped_by_that_rater_only(study):
    _, db = study
    alice, bob = _client(db), _client(db)
    item = alice.get("/api/next").get_json()["item"]
    state = alice.post("/api/skip", json={"item": item}).get_json()   # the file itself is fine
    assert state["item"] != item and state["skipped"] == 1 and state["done"] == 0
    assert _query(db, "SELECT COUNT(*) FROM items WHERE retired IS NOT NULL") == [(0,)]
    assert _rate(bob, item, 4).status_code == 200                  # still in the study for bob
    for body, status in (({"item": "0" * 24}, 404), ({"item": item, "x": 1}, 400), ([1], 400)):
        assert alice.post("/api/skip", json=body).status_code == status


def test_the_page_moves_on_after_an_image_error():
    js = mos_app.PAGE_JS
    handler = js[js.index("img.addEventListener('error'"):]
    assert "post('/api/skip', {item: current})" in handler and "show(" in handler


@pytest.mark.parametrize("host", ["evil.example:8000", "evil.example", "localhost",
                                  "localhost:8001", "127.0.0.2:8000", "", "127.0.0.1:8000@x"])
def test_requests_for_other_host_names_are_refused(study, host):
    _, db = study
    client = _client(db)
    item = client.get("/api/next").get_json()["item"]
    headers = {"Host": host}
    for response in (client.get("/", headers=headers), client.get("/api/next", headers=headers),
                     client.get(f"/image/{item}", headers=headers),
                     client.post("/api/rate", json={"item": item, "score": 3}, headers=headers),
                     client.get("/static/app.js", headers=headers)):
        assert response.status_code == 400 and "Host" in response.get_json()["error"]
    assert _ratings(db) == [] and _query(db, "SELECT COUNT(*) FROM raters") == [(0,)]


def test_the_served_host_names(study):
    _, db = study
    client = _client(db)
    for host in ("127.0.0.1:8000", "LOCALHOST:8000", "[::1]:8000"):
        assert client.get("/", headers={"Host": host}).status_code == 200
    assert (mos_app.served_hosts("127.0.0.1", mos_app.HTTP_DEFAULT_PORT)
            >= {"127.0.0.1", "localhost"})
    assert "[::1]:9000" in mos_app.served_hosts("::1", 9000)
    assert "192.0.2.7:9000" in mos_app.served_hosts("192.0.2.7", 9000)
    wildcard = mos_app.served_hosts("0.0.0.0", 9000)
    assert {f"{a.lower()}:9000" for a in mos_app.local_addresses() if ":" not in a} <= wildcard
    assert f"{socket.gethostname().lower()}:9000" in wildcard


def test_a_visit_without_a_rating_stores_nothing(study):
    _, db = study
    visitors = [_client(db) for _ in range(3)]
    for visitor in visitors:
        assert visitor.get("/api/next").status_code == 200
        assert visitor.get("/").status_code == 200
    assert _query(db, "SELECT COUNT(*) FROM raters") == [(0,)]
    item = visitors[0].get("/api/next").get_json()["item"]
    assert _rate(visitors[0], item, 2).status_code == 200
    assert (_query(db, "SELECT token FROM raters")
            == [(visitors[0].get_cookie(mos_app.COOKIE).value,)])


class _FullDisk:
    """A connection whose writes of ratings fail with ``error`` (the rest is the real one)."""

    def __init__(self, con, error):
        self._con, self._error = con, error

    def execute(self, sql, *args):
        if sql.startswith("INSERT INTO ratings"):
            raise self._error
        return self._con.execute(sql, *args)

    def __getattr__(self, name):
        return getattr(self._con, name)


@pytest.mark.parametrize("error", [sqlite3.OperationalError("database or disk is full"),
                                   OSError(errno.ENOSPC, "No space left on device")])
def test_a_full_disk_on_a_rating_is_a_short_json_error(study, monkeypatch, capsys, error):
    _, db = study
    client = _client(db)
    first = client.get("/api/next").get_json()["item"]
    assert _rate(client, first, 4).status_code == 200
    before = _ratings(db)
    real_connect = mos_db.connect
    monkeypatch.setattr(mos_app, "connect", lambda path: _FullDisk(real_connect(path), error))
    capsys.readouterr()
    item = client.get("/api/next").get_json()["item"]
    response = _rate(client, item, 2)
    assert response.status_code == mos_app.STORE_FAILED_STATUS and response.is_json
    assert "disk is full" in response.get_json()["error"]
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err and "/api/rate" in err
    assert _ratings(db) == before                                 # nothing stored is lost
    monkeypatch.undo()
    assert _rate(client, item, 2).status_code == 200              # the rater can try again
    assert len(_ratings(db)) == len(before) + 1


def test_the_page_shows_the_error_and_lets_the_rater_retry():
    js = mos_app.PAGE_JS
    rate = js[js.index("async function rate"):js.index("buttons.forEach(b => b.addEventListener")]
    assert "message.textContent = 'Not saved: ' + e.message" in rate and "busy = false" in rate


# ----------------------------------------------------------------------------------------------
# A real server: concurrent raters, then kill -9 in the middle of the stream
# ----------------------------------------------------------------------------------------------

N_RATERS = 20
STUDY_ITEMS = len(IMAGES) * (len(METHODS) + len(mos_images.ANCHOR_METHODS))
KILL_AT_FRACTION = 0.3   # kill -9 once this share of all ratings is acknowledged
WAIT_S = 20              # longest wait for the server to start / the raters to get going


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def server(study):
    """``mos.py serve`` of ``study`` as a real process on a free port of 127.0.0.1; yields
    ``(process, base_url, db)``; killed at the end."""
    images, db = study
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    process = subprocess.Popen([sys.executable, str(ROOT / "mos.py"), "serve", "--images",
                                str(images), "--db", str(db), "--port", str(port)],
                               cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + WAIT_S
        while True:
            try:
                urllib.request.urlopen(base + "/static/app.css", timeout=1).read()
                break
            except OSError:
                assert process.poll() is None and time.monotonic() < deadline, \
                    process.stderr.read().decode()
                time.sleep(0.1)
        yield process, base, db
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()
        process.stderr.close()


def _http_rater(base, acked, stop):
    """Open the page, then rate items (score 4) until done or ``stop``; every rating the server
    acknowledged (HTTP 200) is added to ``acked`` as ``(token, item)``."""
    cookies = urllib.request.HTTPCookieProcessor()
    opener = urllib.request.build_opener(cookies)
    try:
        opener.open(base + "/", timeout=5).read()
        token = next(c.value for c in cookies.cookiejar if c.name == mos_app.COOKIE)
        state = json.load(opener.open(base + "/api/next", timeout=5))
        while state["item"] is not None and not stop.is_set():
            req = urllib.request.Request(
                base + "/api/rate", data=json.dumps({"item": state["item"], "score": 4}).encode(),
                headers={"Content-Type": "application/json"})
            item = state["item"]
            state = json.load(opener.open(req, timeout=5))
            acked.append((token, item))
    except (OSError, ValueError, http.client.HTTPException):   # the server was killed
        pass


def _start_raters(base):
    acked, stop = [], threading.Event()
    threads = [threading.Thread(target=_http_rater, args=(base, acked, stop))
               for _ in range(N_RATERS)]
    for t in threads:
        t.start()
    return acked, stop, threads


def test_concurrent_raters_lose_nothing_and_duplicate_nothing(server):
    _, base, db = server
    acked, _, threads = _start_raters(base)
    for t in threads:
        t.join(timeout=WAIT_S)
    stored = _ratings(db)
    assert len(acked) == len(stored) == N_RATERS * STUDY_ITEMS
    assert sorted((r, i) for r, i, _ in stored) == sorted(acked)
    assert {score for _, _, score in stored} == {4}


def test_kill_in_the_middle_of_the_stream_loses_no_committed_rating(server):
    process, base, db = server
    acked, stop, threads = _start_raters(base)
    total = N_RATERS * STUDY_ITEMS
    deadline = time.monotonic() + WAIT_S
    while len(acked) < total * KILL_AT_FRACTION and time.monotonic() < deadline:
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    process.wait()
    stop.set()
    for t in threads:
        t.join(timeout=WAIT_S)
    stored = [(rater, item) for rater, item, _ in _ratings(db)]
    assert len(acked) >= total * KILL_AT_FRACTION, "too few ratings before the kill"
    assert len(stored) < total, "the stream ended before the kill"
    assert set(acked) <= set(stored)                  # every acknowledged rating survived
    assert len(stored) == len(set(stored))            # no duplicate
    assert len(stored) - len(acked) <= N_RATERS       # at most one in flight per rater


def _post_json(opener, url, body):
    request = urllib.request.Request(url, data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    return opener.open(request, timeout=5)


@pytest.mark.skipif(not hasattr(resource, "prlimit"), reason="needs Linux's prlimit")
def test_a_full_disk_under_a_real_server_is_one_line_and_a_json_503(server):
    process, base, db = server
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor())
    opener.open(base + "/", timeout=5).read()
    first = json.load(opener.open(base + "/api/next", timeout=5))["item"]
    second = json.load(_post_json(opener, base + "/api/rate", {"item": first, "score": 4}))["item"]
    before = _ratings(db)
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.prlimit(process.pid, resource.RLIMIT_FSIZE, (1, hard))   # no file may grow now
    with pytest.raises(urllib.error.HTTPError) as refused:
        _post_json(opener, base + "/api/rate", {"item": second, "score": 2})
    assert refused.value.code == mos_app.STORE_FAILED_STATUS
    assert refused.value.headers.get_content_type() == "application/json"
    assert json.load(refused.value)["error"].startswith("the study could not save this")
    resource.prlimit(process.pid, resource.RLIMIT_FSIZE, (soft, hard))
    assert _ratings(db) == before                                   # nothing stored is lost
    _post_json(opener, base + "/api/rate", {"item": second, "score": 2}).read()   # again: saved
    assert len(_ratings(db)) == len(before) + 1
    process.kill()
    process.wait()
    err = process.stderr.read().decode()
    assert "Traceback" not in err
    assert len([line for line in err.splitlines() if line.startswith("mos.py: error:")]) == 1


# ----------------------------------------------------------------------------------------------
# Command line: bad input is one line and a non-zero exit
# ----------------------------------------------------------------------------------------------

def _cli(argv, capsys):
    rc = mos.main(argv)
    err = capsys.readouterr().err.strip()
    return rc, err


@pytest.mark.parametrize("port", ["0", "65536", "http", "-1", "80.5"])
def test_bad_port(study, capsys, port):
    rc, err = _cli(["serve", "--images", str(study[0]), "--port", port], capsys)
    assert rc != 0 and len(err.splitlines()) == 1 and "--port" in err


def test_missing_folder_and_no_images(tmp_path, capsys):
    rc, err = _cli(["serve", "--images", str(tmp_path / "nope"), "--db",
                    str(tmp_path / "db.sqlite")], capsys)
    assert rc != 0 and err.count("\n") == 0 and "no such folder" in err
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("x")
    rc, err = _cli(["serve", "--images", str(tmp_path / "empty"), "--db",
                    str(tmp_path / "db.sqlite")], capsys)
    assert rc != 0 and err.count("\n") == 0 and "no <image>_<method>.png" in err
    assert not (tmp_path / "db.sqlite").exists()


def test_only_anchors_is_not_a_study(tmp_path, capsys):
    _png(tmp_path / "baby_hr.png", np.random.default_rng(1))
    rc, err = _cli(["serve", "--images", str(tmp_path)], capsys)
    assert rc != 0 and "no <image>_<method>.png" in err


def test_bad_anchor_name(study, capsys):
    rc, err = _cli(["serve", "--images", str(study[0]), "--anchors", "nearest,bicubic"], capsys)
    assert rc != 0 and err.count("\n") == 0 and "--anchors" in err


def test_report_of_missing_or_empty_db(study, tmp_path, capsys):
    rc, err = _cli(["report", "--db", str(tmp_path / "none.sqlite"), "--out",
                    str(tmp_path / "o")], capsys)
    assert rc != 0 and "no such file" in err
    rc, err = _cli(["report", "--db", str(study[1]), "--out", str(tmp_path / "o")], capsys)
    assert rc != 0 and "no ratings yet" in err
    (tmp_path / "junk.sqlite").write_bytes(b"not a database" * 100)
    rc, err = _cli(["report", "--db", str(tmp_path / "junk.sqlite")], capsys)
    assert rc != 0 and err.count("\n") == 0 and "not a MOS study database" in err


def test_port_in_use(study, capsys):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        rc, err = _cli(["serve", "--images", str(study[0]), "--db",
                        str(study[1].with_name("other.sqlite")),
                        "--port", str(s.getsockname()[1])], capsys)
    assert rc != 0 and err.count("\n") == 0 and "cannot listen" in err
    assert not study[1].with_name("other.sqlite").exists()


def test_other_hosts_are_told_who_can_reach_the_study():
    assert mos.reach_note("127.0.0.1", 8000).startswith("only this machine")
    note = mos.reach_note("0.0.0.0", 8000)
    assert note.startswith("WARNING") and "--host 127.0.0.1" in note


@pytest.mark.parametrize("tables", [
    "CREATE TABLE notes (id INTEGER PRIMARY KEY, text TEXT);",
    "CREATE TABLE items (id TEXT, image TEXT, method TEXT, path TEXT, size INTEGER);",   # close
    mos_db.SCHEMA_V0 + "CREATE TABLE extra (x);",
])
def test_another_applications_database_is_refused_and_left_as_it_was(study, tmp_path, capsys,
                                                                     tables):
    images, _ = study
    foreign = tmp_path / "app.sqlite"
    con = sqlite3.connect(foreign)
    con.executescript(tables)
    con.close()
    before = foreign.read_bytes()
    listing = sorted(p.name for p in tmp_path.iterdir())
    rc, err = _cli(["serve", "--images", str(images), "--db", str(foreign), "--port",
                    str(_free_port())], capsys)
    assert rc != 0 and len(err.splitlines()) == 1
    assert str(foreign) in err and "not a MOS study database" in err
    assert foreign.read_bytes() == before                        # byte-identical
    assert sorted(p.name for p in tmp_path.iterdir()) == listing   # no -wal / -shm either
    rc, err = _cli(["report", "--db", str(foreign), "--out", str(tmp_path / "o")], capsys)
    assert rc != 0 and len(err.splitlines()) == 1 and "not a MOS study database" in err
    assert foreign.read_bytes() == before and not (tmp_path / "o").exists()


def test_a_newer_study_is_refused(study, capsys):
    images, db = study
    con = sqlite3.connect(db)
    con.execute(f"PRAGMA user_version={mos_db.SCHEMA_VERSION + 1}")
    con.close()
    before = db.read_bytes()
    rc, err = _cli(["serve", "--images", str(images), "--db", str(db), "--port",
                    str(_free_port())], capsys)
    assert rc != 0 and len(err.splitlines()) == 1 and "newer mos.py" in err
    assert db.read_bytes() == before


def test_a_study_of_the_first_version_is_updated_and_keeps_its_ratings(study, tmp_path):
    images, _ = study
    old = tmp_path / "v0.sqlite"
    con = sqlite3.connect(old)
    con.executescript(mos_db.SCHEMA_V0)
    files, _ = mos_images.study_files(images, mos_images.ANCHOR_METHODS)
    for n, ((image, method), path) in enumerate(sorted(files.items())):
        con.execute("INSERT INTO items VALUES (?,?,?,?)", (f"{n:024x}", image, method, str(path)))
    con.execute("INSERT INTO raters VALUES ('r0', 0)")
    con.execute("INSERT INTO ratings VALUES ('r0', ?, 4, 0)", (f"{0:024x}",))
    con.commit()
    con.close()
    before = old.read_bytes()
    mos_report.write_report(old, tmp_path / "report")                   # read as it is, not changed
    assert old.read_bytes() == before
    con = mos_db.open_db(old)
    counts = mos_db.sync_items(con, files)
    con.close()
    assert counts["kept"] == len(files) and counts["added"] == 0   # hashes recorded, same ids
    assert mos_db.check_db(old) == mos_db.CURRENT
    assert _query(old, "SELECT rater, item, score FROM ratings") == [("r0", f"{0:024x}", 4)]
    assert _query(old, "SELECT COUNT(*) FROM items WHERE sha256 IS NULL") == [(0,)]


def test_names_differing_only_in_case_are_refused(study, capsys):
    images, db = study
    (images / "baby_SRGAN.png").write_bytes((images / "bird_srgan.png").read_bytes())
    before = db.read_bytes()
    rc, err = _cli(["serve", "--images", str(images), "--db", str(db), "--port",
                    str(_free_port())], capsys)
    assert rc != 0 and len(err.splitlines()) == 1
    assert "baby_SRGAN.png" in err and "baby_srgan.png" in err and "case" in err
    assert db.read_bytes() == before


# ----------------------------------------------------------------------------------------------
# Report: statistics on known ratings
# ----------------------------------------------------------------------------------------------

KNOWN = {   # method -> {image -> scores}, one score per rater r0..r4
    "nearest": {"baby": [1, 1, 2, 1, 1], "bird": [1, 2, 1, 1, 1]},
    "srresnet": {"baby": [1, 2, 3, 4, 5], "bird": [3, 3, 3, 3, 3]},
    "srgan": {"baby": [4, 4, 5, 3, 4], "bird": [5, 4, 4, 4, 3]},
}


def _known_study(tmp_path, known, name="known"):
    """A study database with the ratings of ``known`` (method -> image -> scores, rater rK gives
    score K) inserted directly, on real (random) image files; returns its path."""
    rng = np.random.default_rng(3)
    folder = tmp_path / f"{name}_images"
    folder.mkdir()
    db = tmp_path / f"{name}.sqlite"
    con = mos_db.open_db(db)
    files = {(image, m): folder / f"{image}_{m}.png" for m in known for image in known[m]}
    for path in files.values():
        _png(path, rng)
    mos_db.sync_items(con, files)
    raters = max(len(scores) for per_image in known.values() for scores in per_image.values())
    for r in range(raters):
        con.execute("INSERT INTO raters VALUES (?, 0)", (f"r{r}",))
    for method, per_image in known.items():
        for image, scores in per_image.items():
            item, = con.execute("SELECT id FROM items WHERE image=? AND method=?",
                                (image, method)).fetchone()
            for r, score in enumerate(scores):
                con.execute("INSERT INTO ratings VALUES (?,?,?,0)", (f"r{r}", item, score))
    con.close()
    return db


@pytest.fixture
def known_db(tmp_path):
    """A study database with the ratings of :data:`KNOWN` inserted directly."""
    return _known_study(tmp_path, KNOWN)


def test_mean_ci_by_hand():
    mean, half, n = mos_stats.mean_ci([1, 2, 3, 4, 5])
    # s = sqrt(10 / 4) = 1.5811, s / sqrt(5) = 0.70711, times t(0.975, 4) = 2.77645
    assert (mean, n) == (3, 5)
    assert half == pytest.approx(T_975_DF4 * math.sqrt(2.5) / math.sqrt(5), abs=1e-9)
    assert half == pytest.approx(1.9632, abs=1e-4)
    assert mos_stats.mean_ci([3, 3, 3]) == (3, 0, 3)
    assert math.isnan(mos_stats.mean_ci([4])[1])


def test_holm_by_hand():
    assert mos_stats.holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])


REPORT_FILES = ("mos.md", "mos_methods.csv", "mos_images.csv", "mos_tests.csv",
                "mos_retired.csv", "mos.png")


def _csv_rows(path):
    import csv
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_report_numbers(known_db, tmp_path):
    out = tmp_path / "out"
    paths = mos_report.write_report(known_db, out)
    assert [p.name for p in paths] == list(REPORT_FILES)
    methods = {r["method"]: r for r in _csv_rows(out / "mos_methods.csv")}
    assert list(methods) == ["nearest", "srgan", "srresnet"]     # anchors first / last
    assert float(methods["srgan"]["mos"]) == pytest.approx(4.0)     # 40 / 10
    assert float(methods["srresnet"]["mos"]) == pytest.approx(3.0)
    assert float(methods["nearest"]["mos"]) == pytest.approx(1.2)   # 12 / 10
    assert (int(methods["srgan"]["n"]), int(methods["srgan"]["raters"])) == (10, 5)
    # srgan scores: 4,4,5,3,4,5,4,4,4,3: deviations^2 sum = 4 -> s = sqrt(4 / 9)
    assert float(methods["srgan"]["ci95"]) == pytest.approx(
        stats.t.ppf(0.975, 9) * (2 / 3) / math.sqrt(10), abs=1e-9)
    assert [int(methods["srgan"][f"n_{s}"]) for s in mos_db.SCORES] == [0, 0, 2, 6, 2]
    images = {(r["image"], r["method"]): r for r in _csv_rows(out / "mos_images.csv")}
    baby = images[("baby", "srresnet")]
    assert float(baby["mos"]) == 3 and int(baby["n"]) == 5 and int(baby["raters"]) == 5
    assert float(baby["ci95"]) == pytest.approx(1.9632, abs=1e-4)
    assert float(images[("bird", "srresnet")]["ci95"]) == 0
    # rater level: each rater's mean over the two images, paired by rater
    # srgan r0..r4: (4+5)/2, (4+4)/2, (5+4)/2, (3+4)/2, (4+3)/2 = 4.5, 4, 4.5, 3.5, 3.5
    # srresnet: 2, 2.5, 3, 3.5, 4 -> differences 2.5, 1.5, 1.5, 0, -0.5: the zero is left out,
    # W = rank of |-0.5| = 1 of n = 4; exact two-sided p = 2 * P(W <= 1) = 2 * 2/16 = 0.25
    # nearest: 1, 1.5, 1.5, 1, 1: below srgan and srresnet for all 5 raters: p = 2/32 = 0.0625
    tests = {(r["a"], r["b"]): r for r in _csv_rows(out / "mos_tests.csv")}
    assert list(tests) == [("nearest", "srgan"), ("nearest", "srresnet"), ("srgan", "srresnet")]
    row = tests[("srgan", "srresnet")]
    assert (int(row["raters"]), int(row["ratings"])) == (5, 20)
    assert (float(row["mean_a"]), float(row["mean_b"]), float(row["diff"])) == (4.0, 3.0, 1.0)
    assert float(row["w"]) == 1 and float(row["p"]) == pytest.approx(0.25)
    expected = stats.wilcoxon([4.5, 4, 4.5, 3.5, 3.5], [2, 2.5, 3, 3.5, 4])
    assert float(row["p"]) == pytest.approx(expected.pvalue, rel=1e-12)
    assert float(tests[("nearest", "srgan")]["p"]) == pytest.approx(0.0625)
    assert float(tests[("nearest", "srresnet")]["p"]) == pytest.approx(0.0625)
    # Holm over the 3 pairs: 0.0625 * 3, max(0.0625 * 2, that), 0.25 * 1
    assert [float(r["p_holm"]) for r in tests.values()] == pytest.approx([0.1875, 0.1875, 0.25])
    assert _csv_rows(out / "mos_retired.csv") == []
    md = (out / "mos.md").read_text()
    assert "| srgan | 4.00 |" in md and "Wilcoxon signed-rank" in md and "5 raters" in md
    assert "| srgan | srresnet | 5 | 20 | 4.00 | 3.00 | 1.00 | 1.0 | 0.250 | 0.250 |" in md
    assert Image.open(out / "mos.png").size[0] > 0


def test_report_command(known_db, tmp_path, capsys):
    assert mos.main(["report", "--db", str(known_db), "--out", str(tmp_path / "r")]) is None
    assert "mos.md" in capsys.readouterr().out


def _files(folder):
    """``{name: bytes}`` of every file in ``folder`` (temporary files included)."""
    return {p.name: p.read_bytes() for p in sorted(Path(folder).iterdir())}


def _add_rating(db, rater="r9", image="baby", method="srgan", score=1):
    """One more rating, by a new rater: a report written after it differs from one before."""
    con = sqlite3.connect(db)
    item, = con.execute("SELECT id FROM items WHERE image=? AND method=? AND retired IS NULL",
                        (image, method)).fetchone()
    con.execute("INSERT INTO raters VALUES (?, 0)", (rater,))
    con.execute("INSERT INTO ratings VALUES (?,?,?,0)", (rater, item, score))
    con.commit()
    con.close()


@pytest.mark.parametrize("failing", range(len(REPORT_FILES)))
def test_a_failing_write_leaves_the_previous_report_whole(known_db, tmp_path, capsys,
                                                          monkeypatch, failing):
    out = tmp_path / "out"
    assert mos.main(["report", "--db", str(known_db), "--out", str(out)]) is None
    before = _files(out)
    _add_rating(known_db)
    real_fsync, calls = os.fsync, []

    def fsync(fd):                # the disk fills up while the report's files are written
        calls.append(fd)
        if len(calls) == failing + 1:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    capsys.readouterr()
    rc, err = _cli(["report", "--db", str(known_db), "--out", str(out)], capsys)
    assert rc != 0 and len(err.splitlines()) == 1 and "No space left on device" in err
    assert _files(out) == before                  # every old file, unchanged; no temporary file
    monkeypatch.undo()
    assert mos.main(["report", "--db", str(known_db), "--out", str(out)]) is None
    after = _files(out)
    assert set(after) == set(before) and after["mos.md"] != before["mos.md"]


def test_report_on_a_full_disk_keeps_the_previous_figure_and_tables(known_db, tmp_path):
    out = tmp_path / "out"
    mos_report.write_report(known_db, out)
    before = _files(out)
    _add_rating(known_db)
    # a rollback journal: a WAL database's 32 KiB -shm index would be hit by the limit first
    sqlite3.connect(known_db).execute("PRAGMA journal_mode=DELETE").close()
    limit = len(before["mos.png"]) // 2             # the tables fit, the figure does not
    assert max(len(v) for k, v in before.items() if k != "mos.png") < limit

    def small_disk():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    result = subprocess.run([sys.executable, str(ROOT / "mos.py"), "report", "--db",
                             str(known_db), "--out", str(out)], cwd=ROOT, capture_output=True,
                            text=True, preexec_fn=small_disk, timeout=WAIT_S * 6)
    err = result.stderr.strip()
    assert result.returncode == 1 and len(err.splitlines()) == 1, err
    assert "mos.png" in err and "File too large" in err
    assert _files(out) == before


def test_one_rater_gets_no_significance_test(study, tmp_path, capsys):
    _, db = study
    client = _client(db)
    score = {"nearest": 1, "bicubic": 2, "srresnet": 3, "srgan": 4, "hr": 5}
    for image, method in _query(db, "SELECT image, method FROM items"):
        assert _rate(client, _item(db, image, method), score[method]).status_code == 200
    out = tmp_path / "report"
    assert mos.main(["report", "--db", str(db), "--out", str(out)]) is None
    tests = _csv_rows(out / "mos_tests.csv")
    assert len(tests) == 10 and all(t["p"] == t["p_holm"] == t["w"] == "" for t in tests)
    assert {(t["raters"], t["ratings"]) for t in tests} == {("1", "6")}
    md = (out / "mos.md").read_text()
    assert f"not tested (1 < {mos_stats.MIN_RATERS_FOR_TESTS} raters)" in md
    assert "No pair is tested" in md and "1 rater in all" in md
    assert "15 ratings by 1 rater of 3 images" in md


def test_tests_need_the_minimum_number_of_raters(tmp_path):
    few = {"srgan": {"baby": [5] * (mos_stats.MIN_RATERS_FOR_TESTS - 1)},
           "bicubic": {"baby": [1] * (mos_stats.MIN_RATERS_FOR_TESTS - 1)}}
    enough = {m: {"baby": s["baby"] + [s["baby"][0]]} for m, s in few.items()}
    (below,), (at,) = (mos_stats.pairwise_tests([r[:4] for r in mos_db.load_ratings(
        _known_study(tmp_path, known, name))]) for known, name in ((few, "few"), (enough, "ok")))
    assert below["p"] is None and below["raters"] == mos_stats.MIN_RATERS_FOR_TESTS - 1
    assert at["p"] == pytest.approx(2 / 2 ** mos_stats.MIN_RATERS_FOR_TESTS)   # all raters agree


def test_the_report_says_which_anchors_were_rated(known_db, tmp_path):
    mos_report.write_report(known_db, tmp_path / "a")
    md = (tmp_path / "a" / "mos.md").read_text()
    assert "Calibration anchors rated: nearest-neighbour upscale `nearest` (10 ratings by 5 " \
           "raters); not rated: HR image `hr`." in md
    none = _known_study(tmp_path, {m: KNOWN[m] for m in ("srgan", "srresnet")}, "no_anchor")
    mos_report.write_report(none, tmp_path / "b")
    md = (tmp_path / "b" / "mos.md").read_text()
    assert "No calibration anchor (nearest-neighbour upscale, HR image) was rated" in md
    assert "as calibration anchors" not in md


# ----------------------------------------------------------------------------------------------
# The real page in headless Chromium (Debian's chromium + chromium-driver, driven by Selenium)
# ----------------------------------------------------------------------------------------------

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
BROWSER_WAIT_S = 10
BROWSER_POLL_S = 0.02


@pytest.fixture
def browser():
    """A headless Chromium driven by Selenium; skipped (with the reason) when not installed."""
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")
    for path in (CHROMIUM, CHROMEDRIVER):
        if not Path(path).is_file():
            pytest.skip(f"{path} not found (apt-get install chromium chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--force-device-scale-factor=1"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options,
                              service=webdriver.ChromeService(executable_path=CHROMEDRIVER))
    try:
        yield driver
    finally:
        driver.quit()


def test_browser_rates_by_click_and_by_key_and_the_report_shows_it(server, browser, tmp_path):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    _, base, db = server
    browser.get(base + "/")
    wait = WebDriverWait(browser, BROWSER_WAIT_S, poll_frequency=BROWSER_POLL_S)

    def progress():
        return browser.find_element(By.ID, "progress").text

    def ready(n):       # image n shown at its size and the buttons enabled
        return (progress() == f"Image {n} of {STUDY_ITEMS}" and browser.execute_script(
            "const i = document.getElementById('image');"
            "return i.complete && i.naturalWidth > 0 && !document.querySelector('button').disabled"))

    given = []
    for n in range(1, STUDY_ITEMS + 1):
        wait.until(lambda _: ready(n))
        width, natural = browser.execute_script(
            "const i = document.getElementById('image'); return [i.width, i.naturalWidth];")
        assert width == natural == HR_SIZE[1]                 # true size, not scaled
        item = browser.find_element(By.ID, "image").get_attribute("src").rsplit("/", 1)[1]
        score = n % 5 + 1
        if n % 2:
            browser.find_element(By.CSS_SELECTOR, f'button[data-score="{score}"]').click()
        else:
            ActionChains(browser).send_keys(str(score)).perform()
        given.append((item, score))
    wait.until(lambda _: progress().startswith(f"Done: {STUDY_ITEMS} of {STUDY_ITEMS}"))
    stored = _ratings(db)
    assert len(stored) == STUDY_ITEMS and len({r for r, _, _ in stored}) == 1
    assert sorted((i, s) for _, i, s in stored) == sorted(given)
    mos_report.write_report(db, tmp_path / "report")
    import csv
    counts = [0] * len(mos_db.SCORES)
    for row in csv.DictReader(open(tmp_path / "report" / "mos_methods.csv")):
        counts = [c + int(row[f"n_{s}"]) for c, s in zip(counts, mos_db.SCORES)]
    assert counts == [[s for _, s in given].count(score) for score in mos_db.SCORES]


def test_browser_moves_on_past_deleted_and_changed_images(server, browser):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.support.ui import WebDriverWait

    _, base, db = server
    images = db.parent / "images"
    for path in images.glob("*_srgan.png"):                   # deleted while serving
        path.unlink()
    _png(images / "baby_srresnet.png", np.random.default_rng(11))   # regenerated
    browser.get(base + "/")
    wait = WebDriverWait(browser, BROWSER_WAIT_S, poll_frequency=BROWSER_POLL_S)
    shown = []

    def page():
        return browser.execute_script(
            "const i = document.getElementById('image');"
            "return [document.getElementById('progress').textContent,"
            "        i.complete && i.naturalWidth > 0"
            "        && !document.querySelector('button').disabled,"
            "        i.getAttribute('src'), document.getElementById('message').textContent];")

    for _ in range(2 * STUDY_ITEMS):
        wait.until(lambda _: page()[0].startswith("Done") or (page()[1] and page()[2] not in shown))
        if page()[0].startswith("Done"):
            break
        shown.append(page()[2])
        ActionChains(browser).send_keys("3").perform()
    left = STUDY_ITEMS - len(IMAGES)                           # the srgan images are gone
    wait.until(lambda _: page()[0].startswith("Done"))
    assert page()[0] == f"Done: {left} of {left} rated. Thank you!", page()
    stored = _ratings(db)
    assert len(stored) == left == len(shown)
    current = {i for (i,) in _query(db, "SELECT id FROM items WHERE retired IS NULL")}
    assert {item for _, item, _ in stored} == current
    assert _item(db, "baby", "srresnet") in {s.rsplit("/", 1)[1] for s in shown}
    assert _query(db, "SELECT method, retired_why FROM items WHERE retired IS NOT NULL "
                      "ORDER BY method") == \
        [("srgan", mos_db.RETIRED_MISSING)] * len(IMAGES) + [("srresnet", mos_db.RETIRED_CHANGED)]
