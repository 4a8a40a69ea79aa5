"""The UHCSDB downloader against a local HTTP server on 127.0.0.1.

The server serves a small database and archive built at test time, honours
Range requests (so resuming is real), and can be told to cut a response short
or to fail, like a flaky mirror.
"""

import http.server
import io
import json
import threading
import zipfile

import numpy as np
import pytest
from PIL import Image

from microrep.cli import main
from microrep.config import FetchConfig
from microrep.data.fetch import FetchError, download, extract_zip, fetch_uhcsdb

from conftest import write_uhcsdb_sqlite


def build_record(folder, images=4):
    """A miniature UHCSDB: sqlite with two tables and a zip of PNG micrographs."""
    folder.mkdir(parents=True, exist_ok=True)
    db_path = folder / "microstructures.sqlite"
    write_uhcsdb_sqlite(db_path, [(1, 800, "C", 90, "M", "Q")],
                        [(index, 5, 100, 1, "spheroidite" if index % 2 else "network")
                         for index in range(1, images + 1)])
    buffer = io.BytesIO()
    rng = np.random.default_rng(0)
    with zipfile.ZipFile(buffer, "w") as archive:
        for index in range(1, images + 1):
            png = io.BytesIO()
            Image.fromarray(rng.integers(0, 255, (60, 80), dtype=np.uint8)).save(png, format="PNG")
            archive.writestr(f"micrographs/micrograph{index}.png", png.getvalue())
    (folder / "micrographs.zip").write_bytes(buffer.getvalue())
    return folder


class RecordServer:
    """Serves files from a dict {path: bytes} on 127.0.0.1 with Range support."""

    def __init__(self, files):
        self.files = files
        self.requests = []
        self.truncate_once = set()
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                server.requests.append((self.path, self.headers.get("Range")))
                body = server.files.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                start = 0
                if self.headers.get("Range"):
                    start = int(self.headers["Range"].split("=")[1].split("-")[0])
                    if start >= len(body):
                        self.send_error(416)
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                else:
                    self.send_response(200)
                self.send_header("Content-Length", str(len(body) - start))
                self.end_headers()
                payload = body[start:]
                if self.path in server.truncate_once:
                    server.truncate_once.discard(self.path)
                    payload = payload[:len(payload) // 2]
                self.wfile.write(payload)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def record(tmp_path):
    folder = build_record(tmp_path / "record")
    files = {f"/mirror/{name}": (folder / name).read_bytes()
             for name in ("microstructures.sqlite", "micrographs.zip")}
    with RecordServer(files) as server:
        yield server, folder


def test_fetch_from_a_mirror_after_a_dead_one(tmp_path, record):
    server, folder = record
    dead = "http://127.0.0.1:9/nothing/"  # port 9 (discard) refuses connections
    config = FetchConfig(dest=str(tmp_path / "uhcsdb"), source=f"{dead},{server.url}/mirror/",
                         timeout=5)
    summary = fetch_uhcsdb(config, progress=False, log=lambda *_: None)
    assert summary["labelled_found"] == 4 and summary["images"] == 4
    manifest = json.loads((tmp_path / "uhcsdb" / "manifest.json").read_text())
    assert manifest["files"]["micrographs.zip"]["source"] == f"{server.url}/mirror/micrographs.zip"
    assert len(manifest["files"]["microstructures.sqlite"]["sha256"]) == 64
    assert sorted(p.name for p in (tmp_path / "uhcsdb" / "micrographs").iterdir())[0] == "micrograph1.png"


def test_cut_download_leaves_only_a_part_file_then_resumes(tmp_path, record):
    server, folder = record
    server.truncate_once.add("/mirror/micrographs.zip")
    target = tmp_path / "micrographs.zip"
    with pytest.raises(FetchError, match="resume"):
        download(f"{server.url}/mirror/micrographs.zip", target, progress=False)
    assert not target.exists() and (tmp_path / "micrographs.zip.part").exists()
    download(f"{server.url}/mirror/micrographs.zip", target, progress=False)
    assert target.read_bytes() == (folder / "micrographs.zip").read_bytes()
    assert server.requests[-1][1] is not None and server.requests[-1][1].startswith("bytes=")
    assert not (tmp_path / "micrographs.zip.part").exists()


def test_changed_files_are_reported_on_refetch(tmp_path, record):
    server, folder = record
    config = FetchConfig(dest=str(tmp_path / "uhcsdb"), source=f"{server.url}/mirror/", timeout=5)
    fetch_uhcsdb(config, progress=False, log=lambda *_: None)
    assert fetch_uhcsdb(config, progress=False, log=lambda *_: None)["warnings"] == []
    server.files["/mirror/micrographs.zip"] = build_record(tmp_path / "other", images=6).joinpath(
        "micrographs.zip").read_bytes()
    summary = fetch_uhcsdb(config, progress=False, log=lambda *_: None)
    assert any("micrographs.zip differs" in w for w in summary["warnings"])


def test_unreachable_network_says_how_to_place_files_by_hand(tmp_path, capsys, monkeypatch):
    import microrep.data.fetch as fetch

    monkeypatch.setattr(fetch, "SOURCES", ("http://127.0.0.1:9/record/",))
    code = main(["fetch", "uhcsdb", "--dest", str(tmp_path / "u"), "--timeout", "2"])
    err = capsys.readouterr().err
    assert code == 2 and "--from-dir" in err and "Traceback" not in err


def test_from_dir_takes_hand_downloaded_files(tmp_path):
    folder = build_record(tmp_path / "by-hand")
    summary = fetch_uhcsdb(FetchConfig(dest=str(tmp_path / "u"), from_dir=str(folder)),
                           progress=False, log=lambda *_: None)
    assert summary["labelled_found"] == 4
    assert json.loads((tmp_path / "u" / "manifest.json").read_text())["files"][
        "microstructures.sqlite"]["source"].startswith("file://")


@pytest.mark.parametrize("name, message", [
    ("../escape.png", "outside"), ("/abs/path.png", "outside"), ("C:/windows.png", "outside")])
def test_malicious_archive_members_are_refused(tmp_path, name, message):
    zip_path = tmp_path / "evil.zip"
    with zipfile.ZipFile(zip_path, "w") as archive:
        archive.writestr(name, b"x")
    with pytest.raises(FetchError, match=message):
        extract_zip(zip_path, tmp_path / "out")
    assert not (tmp_path / "escape.png").exists()


def test_symlink_members_and_corrupt_archives_are_refused(tmp_path):
    zip_path = tmp_path / "link.zip"
    with zipfile.ZipFile(zip_path, "w") as archive:
        info = zipfile.ZipInfo("micrographs/link.png")
        info.external_attr = (0o120777 << 16)
        archive.writestr(info, "/etc/passwd")
    with pytest.raises(FetchError, match="link"):
        extract_zip(zip_path, tmp_path / "out")
    broken = tmp_path / "broken.zip"
    broken.write_bytes(b"PK\x03\x04 this is not really a zip")
    with pytest.raises(FetchError, match="not a valid zip"):
        extract_zip(broken, tmp_path / "out")


def test_corrupt_database_is_refused(tmp_path, record):
    server, folder = record
    server.files["/mirror/microstructures.sqlite"] = b"SQLite format 3\x00" + b"\x00" * 200
    config = FetchConfig(dest=str(tmp_path / "u"), source=f"{server.url}/mirror/", timeout=5)
    with pytest.raises(FetchError, match="SQLite|integrity|lacks table"):
        fetch_uhcsdb(config, progress=False, log=lambda *_: None)
