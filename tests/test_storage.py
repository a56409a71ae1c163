"""Tests for bench.store.storage: URL checks, and that no password reaches a message or a report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import sqlalchemy as sa

from bench.cli import main
from bench.report.build import build
from bench.report.collect import collect
from bench.report.render import hide_password, write
from bench.spec import load_spec
from bench.store.storage import StorageURLError, display_url, normalize_url
from tests.conftest import tiny_spec

SECRET = "hunter2"


@pytest.mark.parametrize("url", [
    f"postgresql://bench:{SECRET}@db.example:5432/bench",
    f"postgresql+psycopg://bench:{SECRET}@db.example/bench?sslmode=require",
    f"mysql://root:{SECRET}@127.0.0.1:3306/test",
    f"mysql+pymysql://u:{SECRET}%40x@h/d",
])
def test_display_url_hides_the_password_and_keeps_the_rest(url: str) -> None:
    shown = display_url(url)
    assert SECRET not in shown and "***" in shown
    parsed, original = sa.make_url(shown), sa.make_url(url)
    assert (parsed.username, parsed.host, parsed.port, parsed.database) == \
        (original.username, original.host, original.port, original.database)
    assert SECRET not in hide_password(url)


def test_display_url_without_a_password_is_unchanged() -> None:
    assert display_url("postgresql://postgres@127.0.0.1:5432/test") == "postgresql://postgres@127.0.0.1:5432/test"
    assert display_url("sqlite:///runs/bench.db") == "sqlite:///runs/bench.db"


def test_normalize_url_keeps_the_password_for_connecting() -> None:
    url = normalize_url(f"postgresql://bench:{SECRET}@db/bench")
    assert url == f"postgresql+psycopg://bench:{SECRET}@db/bench"
    assert normalize_url("mysql://u@h/d").startswith("mysql+pymysql://")
    with pytest.raises(StorageURLError, match="in-memory"):
        normalize_url("sqlite://")
    with pytest.raises(StorageURLError, match="unsupported database"):
        normalize_url("oracle://u@h/d")


@pytest.mark.postgres
def test_password_reaches_neither_report_nor_cli(tmp_path: Path, pg_url: str,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """On the real server (which trusts local connections, so any password is accepted): report.json, the HTML
    and Markdown reports and the CLI's messages show the URL without its password."""
    url = sa.make_url(pg_url).set(password=SECRET).render_as_string(hide_password=False)
    path = tiny_spec(tmp_path)
    assert main(["init", str(path), "--storage", url]) == 0
    col = collect(load_spec(path), url)
    assert SECRET not in col.storage
    paths = write(build(col), tmp_path / "rep", col)
    doc = json.loads(paths["json"].read_text())
    assert doc["storage"] == display_url(url)
    for p in paths.values():
        if p.suffix in (".json", ".md", ".html", ".csv"):
            assert SECRET not in p.read_text(), p
    assert main(["status", str(path), "--storage", url]) == 0
    out = capsys.readouterr()
    assert SECRET not in out.out + out.err and "***" in out.out
