"""download.sh end to end, against the fixture archive over file:// and a local HTTP server."""

import functools
import http.server
import os
import shutil
import socket
import subprocess
import threading
from pathlib import Path

import pytest

from conftest import ARTICLES_PER_CATEGORY, CATEGORIES, ROOT, run_script

ARTICLES = ARTICLES_PER_CATEGORY * len(CATEGORIES)


@pytest.fixture
def checkout(tmp_path) -> Path:
    """A copy of the script in a repository-like tree: it writes to <checkout>/data."""
    (tmp_path / "repo" / "src").mkdir(parents=True)
    shutil.copy(ROOT / "src" / "download.sh", tmp_path / "repo" / "src" / "download.sh")
    return tmp_path / "repo"


def download_env(url: str, articles: int | str = ARTICLES) -> dict:
    return {"LIVEDOOR_URL": url, "LIVEDOOR_EXPECTED_ARTICLES": str(articles)}


def download(checkout: Path, url: str, articles: int | str = ARTICLES):
    env = download_env(url, articles)
    # run from an unrelated directory: the script must find its data/ by its own location
    return run_script(checkout / "src" / "download.sh", cwd=checkout.parent, env=env, check=False)


def data_files(checkout: Path) -> list[str]:
    """What data/ holds, but the lock file that serializes downloads: empty, and never taken for data."""
    data = checkout / "data"
    return sorted(p.name for p in data.iterdir() if p.name != ".download.lock") if data.exists() else []


@pytest.fixture
def http_url(corpus_archive):
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(corpus_archive.parent))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


def test_file_url_downloads_extracts_and_rerun_does_nothing(checkout, corpus_archive):
    result = download(checkout, f"file://{corpus_archive}")
    assert result.returncode == 0, result.stderr
    text = checkout / "data" / "text"
    assert sorted(p.name for p in text.iterdir() if p.is_dir()) == sorted(CATEGORIES)
    assert len([p for p in text.glob("*/*.txt") if p.name != "LICENSE.txt"]) == ARTICLES
    assert data_files(checkout) == ["ldcc-20140209.tar.gz", "text"]
    assert "CC BY-ND 2.1 JP" in result.stdout

    again = download(checkout, f"file://{corpus_archive}")
    assert again.returncode == 0
    assert "nothing to do" in again.stdout


def test_http_download(checkout, http_url):
    result = download(checkout, f"{http_url}/ldcc-20140209.tar.gz")
    assert result.returncode == 0, result.stderr
    assert len(list((checkout / "data" / "text").glob("sports-watch/sports-watch-*.txt"))) == ARTICLES_PER_CATEGORY


def test_corrupt_archive_fails_and_leaves_nothing(checkout, tmp_path):
    corrupt = tmp_path / "corrupt.tar.gz"
    corrupt.write_bytes(b"<html>Not Found</html>")
    result = download(checkout, f"file://{corrupt}")
    assert result.returncode != 0
    assert "not the livedoor corpus" in result.stderr
    assert data_files(checkout) == []


def test_truncated_archive_fails_and_leaves_nothing(checkout, corpus_archive, tmp_path):
    truncated = tmp_path / "truncated.tar.gz"
    truncated.write_bytes(corpus_archive.read_bytes()[: corpus_archive.stat().st_size // 2])
    result = download(checkout, f"file://{truncated}")
    assert result.returncode != 0
    assert data_files(checkout) == []


def test_unreachable_url_fails_and_leaves_nothing(checkout):
    with socket.socket() as s:  # a port that nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    result = download(checkout, f"http://127.0.0.1:{port}/ldcc-20140209.tar.gz")
    assert result.returncode != 0
    assert "could not download" in result.stderr
    assert data_files(checkout) == []


def test_wrong_article_count_fails_without_text_dir(checkout, corpus_archive):
    result = download(checkout, f"file://{corpus_archive}", articles=7367)
    assert result.returncode != 0
    assert f"holds {ARTICLES} articles, expected 7367" in result.stderr
    assert "text" not in data_files(checkout)


def test_two_downloads_at_once_give_one_corpus(checkout, corpus_archive):
    """Two sweeps started together on a fresh clone both ran download.sh: both extracted, and the
    second `mv staging/text data/text` moved its copy into the first's, as data/text/text, which
    prepare.py took for a tenth category."""
    command = ["bash", str(checkout / "src" / "download.sh")]
    env = os.environ | download_env(f"file://{corpus_archive}")
    runs = [subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(2)]
    outputs = [run.communicate() for run in runs]
    assert [run.returncode for run in runs] == [0, 0], outputs
    text = checkout / "data" / "text"
    assert sorted(p.name for p in text.iterdir() if p.is_dir()) == sorted(CATEGORIES)  # no text/text
    assert len([p for p in text.glob("*/*.txt") if p.name != "LICENSE.txt"]) == ARTICLES
    assert data_files(checkout) == ["ldcc-20140209.tar.gz", "text"]  # no extraction left behind
    assert sum("nothing to do" in stdout.decode() for stdout, _ in outputs) == 1  # the second waited, then found it


@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_help_prints_the_usage_and_fetches_nothing(checkout, flag):
    """`download.sh --help` used to start the download."""
    result = run_script(checkout / "src" / "download.sh", flag, env=download_env("file:///nonexistent"), check=False)
    assert result.returncode == 0 and result.stderr == ""
    assert result.stdout.startswith("Fetch the livedoor news corpus")
    assert "LIVEDOOR_URL" in result.stdout and "LIVEDOOR_EXPECTED_ARTICLES" in result.stdout
    assert not (checkout / "data").exists()


@pytest.mark.parametrize("args", [["x"], ["--url=http://mirror"], ["--help", "x"], [""]])
def test_an_unknown_argument_is_an_error(checkout, args):
    result = run_script(checkout / "src" / "download.sh", *args, env=download_env("file:///nonexistent"), check=False)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("download.sh: error: unknown argument")
    assert not (checkout / "data").exists()


@pytest.mark.parametrize("value", ["abc", "0", "-5", "", "7 3", "1e3"])
def test_expected_articles_must_be_a_positive_integer(checkout, corpus_archive, value):
    """LIVEDOOR_EXPECTED_ARTICLES=abc said that a good corpus "holds 180 articles, expected abc; delete it"."""
    assert download(checkout, f"file://{corpus_archive}").returncode == 0
    env = {"LIVEDOOR_URL": f"file://{corpus_archive}", "LIVEDOOR_EXPECTED_ARTICLES": value}
    result = run_script(checkout / "src" / "download.sh", cwd=checkout.parent, env=env, check=False)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.count("\n") == 1 and "delete" not in result.stderr
    assert result.stderr.startswith(f"download.sh: error: LIVEDOOR_EXPECTED_ARTICLES is '{value}'; it is a positive")
    assert data_files(checkout) == ["ldcc-20140209.tar.gz", "text"]  # the corpus is untouched


def test_expected_articles_may_have_leading_zeros(checkout, corpus_archive):
    assert download(checkout, f"file://{corpus_archive}", articles=f"0{ARTICLES}").returncode == 0


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o027, 0o640), (0o002, 0o664)], ids=oct)
def test_the_archive_gets_the_mode_of_a_new_file(checkout, corpus_archive, umask, mode):
    """It was downloaded to a mktemp file, 0600 whatever the umask."""
    env = os.environ | download_env(f"file://{corpus_archive}")
    result = subprocess.run(
        ["bash", checkout / "src" / "download.sh"], env=env, umask=umask, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert (checkout / "data" / "ldcc-20140209.tar.gz").stat().st_mode & 0o7777 == mode
