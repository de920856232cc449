"""The testable parts of the download paths (no network here): session selection,
resumable checksummed fetches against a local HTTP server, argument checks."""
import hashlib
import http.server
import importlib.util
import sys
import threading
import types
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from neural_fitting import download_allen, download_dandi
from neural_fitting.catalog import check_areas, parse_acronyms, select_sessions, session_ids
from neural_fitting.fetch import download, file_is_complete
from utils import InputError, UserInputError

PAYLOAD = bytes(range(256)) * 400  # 102,400 bytes
PAYLOAD_MD5 = hashlib.md5(PAYLOAD).hexdigest()


class RangeHandler(http.server.BaseHTTPRequestHandler):
    """Serves PAYLOAD at any path, honouring "Range: bytes=N-"; records each request's Range."""

    ranges = []

    def do_GET(self):
        wanted = self.headers.get("Range")
        self.ranges.append(wanted)
        begin = int(wanted.split("=")[1].rstrip("-")) if wanted else 0
        body = PAYLOAD[begin:]
        self.send_response(206 if wanted else 200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    RangeHandler.ranges = []
    httpd = http.server.HTTPServer(("127.0.0.1", 0), RangeHandler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/file.bin"
    httpd.shutdown()
    httpd.server_close()


def test_fresh_download_checks_md5(server, tmp_path):
    target = download(server, tmp_path / "file.bin", size=len(PAYLOAD), md5=PAYLOAD_MD5, timeout=5)
    assert target.read_bytes() == PAYLOAD and RangeHandler.ranges == [None]
    assert not (tmp_path / "file.bin.part").exists()


def test_complete_file_is_not_fetched_again(tmp_path):
    target = tmp_path / "file.bin"
    target.write_bytes(PAYLOAD)
    # an unroutable URL: any request would fail
    assert download("http://127.0.0.1:9/x", target, size=len(PAYLOAD), md5=PAYLOAD_MD5, timeout=1) == target
    assert file_is_complete(target, len(PAYLOAD), PAYLOAD_MD5)
    assert not file_is_complete(target, len(PAYLOAD) + 1) and not file_is_complete(target, md5="0" * 32)


def test_interrupted_download_resumes(server, tmp_path):
    (tmp_path / "file.bin.part").write_bytes(PAYLOAD[:30000])
    download(server, tmp_path / "file.bin", size=len(PAYLOAD), md5=PAYLOAD_MD5, timeout=5)
    assert RangeHandler.ranges == ["bytes=30000-"]
    assert (tmp_path / "file.bin").read_bytes() == PAYLOAD


def test_checksum_mismatch_leaves_nothing(server, tmp_path):
    with pytest.raises(ValueError, match="checksum"):
        download(server, tmp_path / "file.bin", md5="0" * 32, timeout=5)
    assert list(tmp_path.iterdir()) == []


def test_unreachable_server_is_one_line(tmp_path):
    with pytest.raises(ConnectionError, match="run again to resume") as err:
        download("http://127.0.0.1:9/x", tmp_path / "f", timeout=1)
    assert "\n" not in str(err.value)


def test_session_selection_from_csv_strings_and_lists():
    table = pd.DataFrame({
        "id": [1, 2, 3, 4],
        "session_type": ["brain_observatory_1.1", "brain_observatory_1.1", "functional_connectivity",
                         "brain_observatory_1.1"],
        "full_genotype": ["wt/wt", "wt/wt", "wt/wt", "Sst-IRES-Cre/wt;Ai32/wt"],
        "ecephys_structure_acronyms": ["['CA1', 'VISp', nan]", "['VISam', nan]", "['VISp']", "['VISp']"],
    })
    assert session_ids(select_sessions(table, ["VISp"])) == [1]
    assert session_ids(select_sessions(table, ["VISp", "VISam"])) == [1, 2]
    listed = table.assign(ecephys_structure_acronyms=[["CA1", "VISp", np.nan], ["VISam"], ["VISp"], ["VISp"]])
    assert session_ids(select_sessions(listed.set_index("id"), ["VISam"])) == [2]
    assert parse_acronyms(["VISp", np.nan]) == ["VISp"]
    with pytest.raises(ValueError, match="lacks"):
        select_sessions(table.drop(columns="full_genotype"), ["VISp"])


def test_area_validation():
    assert check_areas(["VISp", "VISrl"]) == ["VISp", "VISrl"]
    with pytest.raises(ValueError, match="unknown area 'V1'"):
        check_areas(["V1"])


def test_dandi_asset_matching():
    paths = ["sub-1/sub-1_ses-715093703.nwb", "sub-1/sub-1_ses-715093703_probe-8_ecephys.nwb",
             "sub-2/sub-2_ses-719161530.nwb"]
    assert download_dandi.session_assets(paths, [719161530]) == {719161530: paths[2]}
    with pytest.raises(ValueError, match="session 42 has no file"):
        download_dandi.session_assets(paths, [42])


def test_dandi_copies_movies_once(tmp_path):
    source = tmp_path / "templates"
    source.mkdir()
    for name in ("natural_movie_one", "natural_movie_three"):
        np.save(source / f"{name}.npy", np.zeros((2, 3, 4), np.uint8))
    download_dandi.copy_movies(source, tmp_path / "data")
    copied = tmp_path / "data" / "movies" / "natural_movie_one.npy"
    stamp = copied.stat().st_mtime_ns
    download_dandi.copy_movies(source, tmp_path / "data")
    assert copied.stat().st_mtime_ns == stamp
    (source / "natural_movie_three.npy").unlink()
    with pytest.raises(ValueError, match="natural_movie_three.npy not found"):
        download_dandi.copy_movies(source, tmp_path / "other")


@pytest.mark.skipif(importlib.util.find_spec("dandi") is not None, reason="dandi is installed here")
def test_dandi_missing_client_is_one_line(tmp_path):
    with pytest.raises(UserInputError, match="requirements-dandi.txt"):
        download_dandi.main(["--out", str(tmp_path), "--sessions", "715093703"])


def test_dandi_failure_is_one_line(tmp_path, monkeypatch):
    """Stand-ins for dandi 0.81's client: its download() raises RuntimeError once any file failed."""
    calls = []

    class Client:
        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def get_dandiset(self, dandiset, version):
            paths = ["sub-1/sub-1_ses-715093703.nwb", "sub-1/sub-1_ses-715093703_probe-8_ecephys.nwb"]
            return SimpleNamespace(get_assets=lambda: [SimpleNamespace(path=p) for p in paths])

    def download(urls, out, existing):
        calls.append((urls, out, existing))
        raise RuntimeError("Encountered 1 error while downloading.")

    fakes = {"dandi": {}, "dandi.dandiapi": {"DandiAPIClient": Client},
             "dandi.download": {"download": download, "DownloadExisting": SimpleNamespace(OVERWRITE_DIFFERENT="od")}}
    for name, attributes in fakes.items():
        module = types.ModuleType(name)
        module.__dict__.update(attributes)
        monkeypatch.setitem(sys.modules, name, module)
    with pytest.raises(UserInputError, match=r"failed \(Encountered 1 error while downloading.\).*run again") as err:
        download_dandi.main(["--out", str(tmp_path), "--sessions", "715093703"])
    assert "\n" not in str(err.value)
    assert calls == [(["dandi://dandi/000021@draft/sub-1/sub-1_ses-715093703.nwb"], tmp_path / "sessions", "od")]


@pytest.mark.skipif(importlib.util.find_spec("allensdk") is not None, reason="allensdk is installed here")
def test_allen_missing_sdk_is_one_line(tmp_path):
    with pytest.raises(InputError, match="requirements-allen.txt"):
        download_allen.main(["--out", str(tmp_path)])


def test_allen_arguments_checked_before_anything(tmp_path):
    with pytest.raises(UserInputError, match="unknown area"):
        download_allen.main(["--out", str(tmp_path), "--areas", "VISx"])
    with pytest.raises(UserInputError, match="at least 1"):
        download_allen.main(["--out", str(tmp_path), "--max-sessions", "0"])
    assert list(tmp_path.iterdir()) == []
