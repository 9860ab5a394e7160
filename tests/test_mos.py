"""The blind MOS study (``mos.py``): the rating API through Flask's test client (blind, random
order per rater, at most once per pair, resume after a restart, refused requests leave the
database unchanged), a real server killed in the middle of a stream of ratings from concurrent
raters, the command line's bad input, and the report's statistics against hand-computed values.
"""
import http.client
import json
import math
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
from PIL import Image
from scipy import stats

import mos

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
    files, notes = mos.study_files(images, mos.ANCHOR_METHODS, hr_set)
    assert notes == []
    db = tmp_path / "mos.sqlite"
    con = mos.open_db(db)
    mos.add_items(con, files)
    con.close()
    return images, db


def _client(db):
    """A new app on ``db`` (a server restart) and a client that has opened the start page."""
    client = mos.create_app(db).test_client()
    assert client.get("/").status_code == 200
    return client


def _rate(client, item, score):
    return client.post("/api/rate", json={"item": item, "score": score})


def _ratings(db):
    con = sqlite3.connect(db)
    rows = sorted(con.execute("SELECT rater, item, score FROM ratings"))
    con.close()
    return rows


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
        len(IMAGES) * (len(METHODS) + len(mos.ANCHOR_METHODS))


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
    files, _ = mos.study_files(images, mos.ANCHOR_METHODS, tmp_path / "Set5")   # the set root
    nearest = np.asarray(Image.open(files[("baby", "nearest")]))
    np.testing.assert_array_equal(nearest, np.repeat(np.repeat(lr, 4, axis=0), 4, axis=1))
    np.testing.assert_array_equal(np.asarray(Image.open(files[("baby", "hr")])),
                                  np.asarray(Image.open(hr_dir / "baby.png")))


def test_anchor_not_listed_is_left_out_and_missing_one_is_noted(study):
    images, _ = study
    files, _ = mos.study_files(images, ("nearest",))
    assert {m for _, m in files} == set(METHODS) | {"nearest"}
    (images / "bird_nearest.png").unlink()
    _, notes = mos.study_files(images, ("nearest",))
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
    words = METHODS + mos.ANCHOR_METHODS + IMAGES + (".png",)
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
    cookie = client.get_cookie(mos.COOKIE).value
    restarted = mos.create_app(db).test_client()              # a new server on the same DB
    restarted.set_cookie(mos.COOKIE, cookie)
    state = restarted.get("/api/next").get_json()
    assert state["done"] == 4 and state["total"] == 15
    assert state["item"] not in done
    rest = _rate_all(restarted)
    assert len(rest) == 11 and not set(rest) & set(done)
    # prepare the same folder again: the study keeps its ids, nothing is added
    files, _ = mos.study_files(study[0], mos.ANCHOR_METHODS)
    con = mos.open_db(db)
    assert mos.add_items(con, files) == 0


def test_cookie_is_a_random_http_only_token(study):
    client = _client(study[1])
    header = client.get("/").headers.get("Set-Cookie")
    assert header is None                                     # known rater: no new token
    fresh = mos.create_app(study[1]).test_client()
    header = fresh.get("/").headers["Set-Cookie"]
    assert "HttpOnly" in header and "SameSite=Strict" in header
    assert len(fresh.get_cookie(mos.COOKIE).value) >= 40


def test_raters_are_separate_and_no_rating_is_ever_sent_back(study):
    _, db = study
    alice, bob = _client(db), _client(db)
    item = alice.get("/api/next").get_json()["item"]
    assert _rate(alice, item, 1).status_code == 200
    assert _rate(bob, item, 5).status_code == 200          # bob's own rating of the same pair
    assert sorted(s for _, _, s in _ratings(db)) == [1, 5]
    state = bob.get("/api/next").get_json()
    assert set(state) == {"item", "done", "total"} and state["done"] == 1


def test_no_administrative_route():
    routes = {(r.rule, m) for r in mos.create_app(":memory:").url_map.iter_rules()
              for m in r.methods - {"HEAD", "OPTIONS"}}
    assert routes == {("/", "GET"), ("/static/<name>", "GET"), ("/image/<item>", "GET"),
                      ("/api/next", "GET"), ("/api/rate", "POST")}


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
        (client.post("/api/rate", data=ok + " " * mos.MAX_REQUEST_BYTES,
                     content_type="application/json"), 413),
        (client.get("/api/rate"), 405),
        (mos.create_app(db).test_client().post("/api/rate", json=json.loads(ok)), 403),
        (mos.create_app(db).test_client().get("/api/next"), 403),
    ]
    other = mos.create_app(db).test_client()
    other.set_cookie(mos.COOKIE, "guessed-token")
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
# A real server: concurrent raters, then kill -9 in the middle of the stream
# ----------------------------------------------------------------------------------------------

N_RATERS = 20
STUDY_ITEMS = len(IMAGES) * (len(METHODS) + len(mos.ANCHOR_METHODS))
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
        token = next(c.value for c in cookies.cookiejar if c.name == mos.COOKIE)
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


# ----------------------------------------------------------------------------------------------
# Report: statistics on known ratings
# ----------------------------------------------------------------------------------------------

KNOWN = {   # method -> {image -> scores}, one score per rater r0..r4
    "nearest": {"baby": [1, 1, 2, 1, 1], "bird": [1, 2, 1, 1, 1]},
    "srresnet": {"baby": [1, 2, 3, 4, 5], "bird": [3, 3, 3, 3, 3]},
    "srgan": {"baby": [4, 4, 5, 3, 4], "bird": [5, 4, 4, 4, 3]},
}


@pytest.fixture
def known_db(tmp_path):
    """A study database with the ratings of :data:`KNOWN` inserted directly."""
    db = tmp_path / "known.sqlite"
    con = mos.open_db(db)
    files = {(image, m): tmp_path / f"{image}_{m}.png" for m in KNOWN for image in KNOWN[m]}
    mos.add_items(con, files)
    for r in range(5):
        con.execute("INSERT INTO raters VALUES (?, 0)", (f"r{r}",))
    for method, per_image in KNOWN.items():
        for image, scores in per_image.items():
            item, = con.execute("SELECT id FROM items WHERE image=? AND method=?",
                                (image, method)).fetchone()
            for r, score in enumerate(scores):
                con.execute("INSERT INTO ratings VALUES (?,?,?,0)", (f"r{r}", item, score))
    con.close()
    return db


def test_mean_ci_by_hand():
    mean, half, n = mos.mean_ci([1, 2, 3, 4, 5])
    # s = sqrt(10 / 4) = 1.5811, s / sqrt(5) = 0.70711, times t(0.975, 4) = 2.77645
    assert (mean, n) == (3, 5)
    assert half == pytest.approx(T_975_DF4 * math.sqrt(2.5) / math.sqrt(5), abs=1e-9)
    assert half == pytest.approx(1.9632, abs=1e-4)
    assert mos.mean_ci([3, 3, 3]) == (3, 0, 3)
    assert math.isnan(mos.mean_ci([4])[1])


def test_holm_by_hand():
    assert mos.holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])


def test_report_numbers(known_db, tmp_path):
    out = tmp_path / "out"
    paths = mos.write_report(known_db, out)
    assert {p.name for p in paths} == {"mos.md", "mos_methods.csv", "mos_images.csv",
                                       "mos_tests.csv", "mos.png"}
    import csv
    methods = {r["method"]: r for r in csv.DictReader(open(out / "mos_methods.csv"))}
    assert list(methods) == ["nearest", "srgan", "srresnet"]     # anchors first / last
    assert float(methods["srgan"]["mos"]) == pytest.approx(4.0)     # 40 / 10
    assert float(methods["srresnet"]["mos"]) == pytest.approx(3.0)
    assert float(methods["nearest"]["mos"]) == pytest.approx(1.2)   # 12 / 10
    # srgan scores: 4,4,5,3,4,5,4,4,4,3: deviations^2 sum = 4 -> s = sqrt(4 / 9)
    assert float(methods["srgan"]["ci95"]) == pytest.approx(
        stats.t.ppf(0.975, 9) * (2 / 3) / math.sqrt(10), abs=1e-9)
    assert [int(methods["srgan"][f"n_{s}"]) for s in mos.SCORES] == [0, 0, 2, 6, 2]
    images = {(r["image"], r["method"]): r for r in csv.DictReader(open(out / "mos_images.csv"))}
    baby = images[("baby", "srresnet")]
    assert float(baby["mos"]) == 3 and int(baby["n"]) == 5
    assert float(baby["ci95"]) == pytest.approx(1.9632, abs=1e-4)
    assert float(images[("bird", "srresnet")]["ci95"]) == 0
    tests = {(r["a"], r["b"]): r for r in csv.DictReader(open(out / "mos_tests.csv"))}
    srgan = [s for v in KNOWN["srgan"].values() for s in v]
    srresnet = [s for v in KNOWN["srresnet"].values() for s in v]
    expected = stats.mannwhitneyu(srgan, srresnet, alternative="two-sided")
    row = tests[("srgan", "srresnet")]
    assert float(row["p"]) == pytest.approx(expected.pvalue, rel=1e-12)
    assert float(row["u"]) == pytest.approx(expected.statistic)
    assert float(row["p_a_better"]) == pytest.approx(expected.statistic / 100)
    assert float(row["p"]) < 0.05
    assert len(tests) == 3
    md = (out / "mos.md").read_text()
    assert "| srgan | 4.00 |" in md and "Mann-Whitney U" in md and "5 raters" in md
    assert Image.open(out / "mos.png").size[0] > 0


def test_report_command(known_db, tmp_path, capsys):
    assert mos.main(["report", "--db", str(known_db), "--out", str(tmp_path / "r")]) is None
    assert "mos.md" in capsys.readouterr().out


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
    mos.write_report(db, tmp_path / "report")
    import csv
    counts = [0] * len(mos.SCORES)
    for row in csv.DictReader(open(tmp_path / "report" / "mos_methods.csv")):
        counts = [c + int(row[f"n_{s}"]) for c, s in zip(counts, mos.SCORES)]
    assert counts == [[s for _, s in given].count(score) for score in mos.SCORES]
