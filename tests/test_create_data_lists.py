"""create_data_lists.py: lists, the demo dataset, resumable verified downloads, safe extraction."""
import hashlib
import http.server
import io
import json
import tarfile
import threading
import time
import warnings
import zipfile

import numpy as np
import pytest

import create_data_lists as cdl
import datasets
import utils

PAYLOAD = np.random.default_rng(0).integers(0, 256, 300_000, dtype=np.uint8).tobytes()


# -- a local HTTP server with Range support -------------------------------------------------------

class _Handler(http.server.BaseHTTPRequestHandler):
    mode = "normal"            # normal | drop (send half, then hang up) | ignore_range
    ranges = []                # Range headers received

    def log_message(self, *args):
        pass

    def do_GET(self):
        if self.path != "/file.bin":
            self.send_error(404)
            return
        rng = self.headers.get("Range")
        type(self).ranges.append(rng)
        start = 0
        if rng and self.mode != "ignore_range":
            start = int(rng.split("=")[1].split("-")[0])
            if start >= len(PAYLOAD):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(PAYLOAD)}")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(PAYLOAD) - 1}/{len(PAYLOAD)}")
        else:
            self.send_response(200)
        body = PAYLOAD[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.mode == "drop":
            self.wfile.write(body[:len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body)


@pytest.fixture
def server():
    _Handler.mode, _Handler.ranges = "normal", []
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_download_full(server, tmp_path):
    dest = cdl.download(f"{server}/file.bin", tmp_path / "f.bin", progress=False)
    assert dest.read_bytes() == PAYLOAD and not (tmp_path / "f.bin.part").exists()
    assert _Handler.ranges == [None]
    cdl.download(f"{server}/file.bin", dest, progress=False)      # present: no request
    assert _Handler.ranges == [None]


def test_download_resumes_after_interruption(server, tmp_path):
    dest, part = tmp_path / "f.bin", tmp_path / "f.bin.part"
    _Handler.mode = "drop"
    with pytest.raises(cdl.DownloadError, match="resume"):
        cdl.download(f"{server}/file.bin", dest, progress=False)
    kept = part.stat().st_size
    assert 0 < kept < len(PAYLOAD) and not dest.exists()
    _Handler.mode = "normal"
    sha = hashlib.sha256(PAYLOAD).hexdigest()
    cdl.download(f"{server}/file.bin", dest, expected_sha256=sha, progress=False)
    assert _Handler.ranges[-1] == f"bytes={kept}-"
    assert dest.read_bytes() == PAYLOAD and not part.exists()


def test_download_restarts_when_range_ignored(server, tmp_path):
    dest, part = tmp_path / "f.bin", tmp_path / "f.bin.part"
    part.write_bytes(b"garbage that must not survive")
    _Handler.mode = "ignore_range"
    cdl.download(f"{server}/file.bin", dest, progress=False)
    assert _Handler.ranges == ["bytes=29-"]
    assert dest.read_bytes() == PAYLOAD


def test_download_complete_part_is_not_fetched_again(server, tmp_path):
    (tmp_path / "f.bin.part").write_bytes(PAYLOAD)
    cdl.download(f"{server}/file.bin", tmp_path / "f.bin", progress=False)
    assert _Handler.ranges == [f"bytes={len(PAYLOAD)}-"]          # answered 416: already whole
    assert (tmp_path / "f.bin").read_bytes() == PAYLOAD


def test_download_checksum_mismatch(server, tmp_path):
    dest = tmp_path / "f.bin"
    with pytest.raises(cdl.DownloadError, match="checksum mismatch"):
        cdl.download(f"{server}/file.bin", dest, expected_sha256="0" * 64, progress=False)
    assert not dest.exists() and not (tmp_path / "f.bin.part").exists()


def test_download_errors_and_file_url(server, tmp_path):
    with pytest.raises(cdl.DownloadError, match="missing.bin.*404"):
        cdl.download(f"{server}/missing.bin", tmp_path / "m.bin", progress=False)
    src = tmp_path / "src.bin"
    src.write_bytes(PAYLOAD)
    (tmp_path / "copy.bin.part").write_bytes(PAYLOAD[:1000])     # file:// ignores ranges
    out = cdl.download(src.as_uri(), tmp_path / "copy.bin", progress=False)
    assert out.read_bytes() == PAYLOAD


# -- archives -----------------------------------------------------------------------------------

def test_safe_extract_and_verify(tmp_path):
    good = tmp_path / "good.zip"
    with zipfile.ZipFile(good, "w") as z:
        z.writestr("set/HR/a.txt", "x")
    cdl.verify_archive(good)
    out = cdl.safe_extract(good, tmp_path / "out")
    assert (out / "set" / "HR" / "a.txt").read_text() == "x"
    (out / "set" / "HR" / "a.txt").unlink()
    cdl.safe_extract(good, tmp_path / "out")                     # marker: not extracted again
    assert not (out / "set" / "HR" / "a.txt").exists()

    evil = tmp_path / "evil.zip"
    with zipfile.ZipFile(evil, "w") as z:
        z.writestr("ok.txt", "x")
        z.writestr("../escaped.txt", "x")
    with pytest.raises(ValueError, match="escaped.txt"):
        cdl.safe_extract(evil, tmp_path / "out2")
    assert not (tmp_path / "escaped.txt").exists() and not (tmp_path / "out2" / "ok.txt").exists()

    link_tar = tmp_path / "link.tar"
    with tarfile.open(link_tar, "w") as t:
        info = tarfile.TarInfo("benchmark/link")
        info.type, info.linkname = tarfile.SYMTYPE, "../../etc/passwd"
        t.addfile(info)
    with pytest.raises(ValueError, match="links outside"):
        cdl.safe_extract(link_tar, tmp_path / "out3")
    abs_tar = tmp_path / "abs.tar"
    with tarfile.open(abs_tar, "w") as t:
        info = tarfile.TarInfo("/tmp/abs.txt")
        info.size = 1
        t.addfile(info, io.BytesIO(b"x"))
    with pytest.raises(ValueError, match="outside"):
        cdl.safe_extract(abs_tar, tmp_path / "out4")

    truncated = tmp_path / "cut.zip"
    truncated.write_bytes(good.read_bytes()[:40])
    with pytest.raises(cdl.DownloadError, match="cut.zip"):
        cdl.verify_archive(truncated)


# -- lists --------------------------------------------------------------------------------------

def test_lists_from_shared_benchmark(shared_data, tmp_path):
    written = cdl.lists_from_benchmark_root(shared_data / "benchmark", tmp_path)
    assert written["B100"] is None and written["Urban100"] is None
    info = json.loads(written["Set5"].read_text())
    assert info["name"] == "Set5" and info["scale"] == 4 and len(info["images"]) == 5
    assert info["images"][0]["lr"].endswith("babyx4.png")
    ds = datasets.TestDataset.from_list(written["Set14"])
    assert len(ds) == 14 and ds.name == "Set14"
    assert not list(tmp_path.glob("*.tmp"))


def test_list_from_folder_errors(tmp_path):
    hr, lr = tmp_path / "HR", tmp_path / "LR"
    utils.save_image(hr / "a.png", np.zeros((16, 20, 3), np.uint8))
    utils.save_image(hr / "b.png", np.zeros((16, 20, 3), np.uint8))
    (hr / "Thumbs.db").write_bytes(b"\0")
    with pytest.warns(UserWarning, match="Thumbs.db"):
        path = cdl.list_from_folder(hr, None, "mine", tmp_path / "lists")
    info = json.loads(path.read_text())
    assert [e["lr"] for e in info["images"]] == [None, None] and info["lr_dir"] is None
    utils.save_image(lr / "ax4.png", np.zeros((4, 5, 3), np.uint8))
    with pytest.raises(FileNotFoundError, match="bx4"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cdl.list_from_folder(hr, lr, "mine", tmp_path / "lists")
    utils.save_image(lr / "bx4.png", np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(ValueError, match="bx4.png"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cdl.list_from_folder(hr, lr, "mine", tmp_path / "lists")
    assert json.loads(path.read_text()) == info           # the old list is untouched


def test_cli(tmp_path, capsys):
    hr = tmp_path / "HR"
    utils.save_image(hr / "a.png", np.zeros((16, 20, 3), np.uint8))
    assert cdl.main(["--from-folder", str(hr), "--name", "x", "--lists-dir", str(tmp_path)]) == 0
    assert (tmp_path / "x.json").is_file()
    assert cdl.main(["--from-folder", str(tmp_path / "nope"), "--name", "y",
                     "--lists-dir", str(tmp_path)]) == 1
    assert "nope" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cdl.main([])


# -- demo dataset -------------------------------------------------------------------------------

def test_build_demo_dataset(tmp_path):
    root, lists_dir = tmp_path / "demo", tmp_path / "lists"
    lists = cdl.build_demo_dataset(root, lists_dir)
    assert lists == {"train": lists_dir / "demo_train.json", "test": lists_dir / "demo_test.json"}
    for split, stems in (("train", cdl.DEMO_TRAIN), ("test", cdl.DEMO_TEST)):
        info = json.loads(lists[split].read_text())
        assert info["name"] == f"demo_{split}"
        assert sorted(p.stem for p in (root / split / "HR").glob("*.png")) == sorted(stems)
        for entry in info["images"]:
            hr, lr = utils.load_image(entry["hr"]), utils.load_image(entry["lr"])
            assert hr.shape[0] % 4 == 0 and hr.shape[1] % 4 == 0 and hr.shape[2] == 3
            assert lr.shape == (hr.shape[0] // 4, hr.shape[1] // 4, 3)
    assert not set(cdl.DEMO_TRAIN) & set(cdl.DEMO_TEST)
    # the made LR is the MATLAB-exact bicubic of the HR
    _, hr_path = min((p.stat().st_size, p) for p in (root / "test" / "HR").glob("*.png"))
    lr_path = root / "test" / "LR_bicubic" / "X4" / f"{hr_path.stem}x4.png"
    assert np.array_equal(utils.load_image(lr_path), datasets.make_lr(utils.load_image(hr_path), 4))
    # idempotent: nothing rewritten, fast
    stamp = {p: p.stat().st_mtime_ns for p in root.rglob("*.png")}
    start = time.perf_counter()
    cdl.build_demo_dataset(root, lists_dir)
    assert time.perf_counter() - start < 2
    assert stamp == {p: p.stat().st_mtime_ns for p in root.rglob("*.png")}
    assert len(datasets.TestDataset.from_list(lists["test"])) == len(cdl.DEMO_TEST)
