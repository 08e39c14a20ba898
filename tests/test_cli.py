"""The command line end to end: index files, folders and CSV; search; compare; dedupe; keys."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import pytest
import sqlalchemy as sa
from PIL import ImageOps
from typer.testing import CliRunner

from medialayer import MediaLayer
from medialayer.cli import app
from medialayer.csvfile import safe_cell

import synth
import video_synth

runner = CliRunner()


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    folder = tmp_path / "photos"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.jpg").write_bytes(synth.jpeg(synth.photo(1)))
    (folder / "a-copy.png").write_bytes(synth.png(synth.crop_center(synth.photo(1), 0.8)))
    (folder / "sub" / "a-flip.jpg").write_bytes(synth.jpeg(ImageOps.mirror(synth.photo(1))))
    (folder / "b.jpg").write_bytes(synth.jpeg(synth.photo(2)))
    (folder / "b-pad.jpg").write_bytes(synth.jpeg(synth.pad(synth.photo(2), 0.1, "white")))
    (folder / "c.jpg").write_bytes(synth.jpeg(synth.photo(3)))
    (folder / "broken.jpg").write_bytes(b"not an image")
    return folder


def invoke(*args: str) -> object:
    result = runner.invoke(app, [str(a) for a in args])
    return result


def said(result: object) -> str:
    """A command's output as one line: rich wraps and boxes usage errors to the terminal."""
    return " ".join(result.output.replace("│", " ").split())


def test_index_a_folder_then_search(photos: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    r = invoke("index", photos / "a.jpg", photos / "b.jpg", "--data-dir", data, "--json")
    assert r.exit_code == 0, r.output
    assert len(json.loads(r.stdout)["indexed"]) == 2
    r = invoke("search", photos / "a-copy.png", "--data-dir", data, "--json", "--top-k", "1")
    hits = json.loads(r.stdout)["results"]
    assert hits[0]["name"] == "a.jpg" and hits[0]["confidence"] == "high"


def test_a_bad_file_is_reported_and_the_rest_indexed(photos: Path, tmp_path: Path) -> None:
    r = invoke("index", photos, "--data-dir", tmp_path / "d", "--json")
    out = json.loads(r.stdout)
    assert r.exit_code == 1 and "1 of 7 files or rows failed" in r.stderr
    assert len(out["indexed"]) == 6
    assert [f["source"].endswith("broken.jpg") for f in out["failed"]] == [True]


def test_index_a_csv_of_paths_with_external_ids(photos: Path, tmp_path: Path) -> None:
    listing = tmp_path / "list.csv"
    listing.write_text("path,name,external_id,price\n"
                       f"{photos / 'a.jpg'},Brand A,sku-1,10\n"
                       "photos/b.jpg,Brand B,sku-2,12\n"
                       "missing.jpg,Gone,sku-3,1\n"
                       ",,,\n"
                       "too,many,fields,in,this,line\n")
    data = tmp_path / "data"
    r = invoke("index", listing, "--data-dir", data, "--json")
    assert r.exit_code == 1, r.output  # some rows failed
    out = json.loads(r.stdout)
    assert [m["row"] for m in out["indexed"]] == [1, 2]
    assert [f["row"] for f in out["failed"]] == [3, 4, 5]
    again = json.loads(invoke("index", listing, "--data-dir", data, "--json").stdout)
    assert [m["media_id"] for m in again["indexed"]] == [m["media_id"] for m in out["indexed"]]
    ml = MediaLayer(data)
    record = ml.store.get_by_external_id("default", "sku-1")
    assert record.name == "Brand A" and record.metadata == {"price": "10"}
    assert len(ml.list()) == 2
    ml.close()


def test_search_prints_a_table(photos: Path, tmp_path: Path) -> None:
    invoke("index", photos / "b.jpg", "--data-dir", tmp_path / "d")
    r = invoke("search", photos / "b-pad.jpg", "--data-dir", tmp_path / "d")
    assert r.exit_code == 0 and "b.jpg" in r.stdout and "high" in r.stdout


def test_search_with_a_bad_file_is_one_clear_error(photos: Path, tmp_path: Path) -> None:
    r = invoke("search", photos / "broken.jpg", "--data-dir", tmp_path / "d")
    assert r.exit_code == 1
    assert "error" in r.output and "Traceback" not in r.output


def test_compare(photos: Path) -> None:
    same = json.loads(invoke("compare", photos / "a.jpg", photos / "a-copy.png", "--json").stdout)
    other = json.loads(invoke("compare", photos / "a.jpg", photos / "c.jpg", "--json").stdout)
    assert same["confidence"] == "high" and other["confidence"] == "low"


def test_dedupe_groups_clusters_and_writes_reports(photos: Path, tmp_path: Path) -> None:
    html, pairs = tmp_path / "report.html", tmp_path / "pairs.csv"
    r = invoke("dedupe", photos, "--html", html, "--csv", pairs, "--json")
    assert r.exit_code == 0, r.output
    clusters = json.loads(r.stdout)
    names = sorted(sorted(m["name"] for m in c["members"]) for c in clusters)
    assert names == [["a-copy.png", "a-flip.jpg", "a.jpg"], ["b-pad.jpg", "b.jpg"]]
    page = html.read_text()
    assert page.count("data:image/jpeg;base64,") == 5 and "Cluster 2" in page
    assert pairs.read_text().startswith("cluster,a,b,similarity_score")


def test_keys_create_list_revoke(tmp_path: Path) -> None:
    data = tmp_path / "d"
    r = invoke("keys", "create", "--tenant", "shop", "--scopes", "index,search", "--data-dir", data)
    assert r.exit_code == 0
    key = r.stdout.strip().splitlines()[-1]
    assert key.startswith("ml_")
    listing = invoke("keys", "list", "--data-dir", data).stdout
    assert "shop" in listing and key not in listing
    assert invoke("keys", "revoke", key[:10], "--data-dir", data).exit_code == 0
    bad = invoke("keys", "create", "--scopes", "everything", "--data-dir", data)
    assert bad.exit_code == 1


def test_csv_cells_that_a_spreadsheet_would_run_are_quoted(tmp_path: Path, monkeypatch) -> None:
    """File names and URLs come from whoever supplied the files: a CSV the CLI writes never
    hands a spreadsheet a formula (OWASP CSV injection)."""
    folder = tmp_path / "shop"
    folder.mkdir()
    (folder / "=HYPERLINK(1).jpg").write_bytes(synth.jpeg(synth.photo(1)))
    (folder / "@SUM(1).png").write_bytes(synth.png(synth.crop_center(synth.photo(1), 0.8)))
    monkeypatch.chdir(folder)  # the pairs then name the files as found: relative to "."
    assert invoke("dedupe", ".", "--csv", tmp_path / "pairs.csv").exit_code == 0
    listing = tmp_path / "list.csv"
    listing.write_text('url,external_id\n"=cmd|\' /C calc\'!A0",sku-1\n+1,sku-2\n')
    invoke("index", listing, "--data-dir", tmp_path / "d", "--failed-csv", tmp_path / "bad.csv")
    with open(tmp_path / "pairs.csv", newline="") as f:
        pairs = list(csv.reader(f))
    with open(tmp_path / "bad.csv", newline="") as f:
        failed = list(csv.reader(f))
    assert sorted(pairs[1][1:3]) == ["'=HYPERLINK(1).jpg", "'@SUM(1).png"]
    assert [row[0] for row in failed[1:]] == ["'=cmd|' /C calc'!A0", "'+1"]
    cells = [cell for row in pairs + failed for cell in row]
    assert not any(cell.startswith(("=", "+", "-", "@", "\t", "\r")) for cell in cells)


def test_safe_cell_quotes_every_formula_start_and_only_those() -> None:
    for start in "=+-@\t\r":
        assert safe_cell(f"{start}1") == f"'{start}1"
    assert safe_cell("a=1") == "a=1" and safe_cell(-1) == -1 and safe_cell("'=1") == "'=1"


def test_a_csv_indexed_again_finishes_every_row(photos: Path, tmp_path: Path,
                                                monkeypatch) -> None:
    """On the second run every row is known: whole claims are finished without fetching, and
    the run must still go on claiming until no row is left, not stop after the first claim."""
    monkeypatch.setenv("MEDIALAYER_BULK_CONCURRENCY", "2")
    listing = tmp_path / "list.csv"
    listing.write_text("path,external_id\n" + "".join(
        f"{photos / name},sku-{i}\n" for i, name in enumerate(["a.jpg", "b.jpg", "c.jpg"] * 2)))
    data = tmp_path / "data"
    first = json.loads(invoke("index", listing, "--data-dir", data, "--json").stdout)
    again = invoke("index", listing, "--data-dir", data, "--json")
    assert again.exit_code == 0, again.output
    rows = json.loads(again.stdout)["indexed"]
    assert [m["row"] for m in rows] == [1, 2, 3, 4, 5, 6]
    assert [m["media_id"] for m in rows] == [m["media_id"] for m in first["indexed"]]


def test_a_folder_indexed_again_adds_nothing(photos: Path, tmp_path: Path) -> None:
    """A file is catalogued under its absolute path as external id: a second run finds every
    file already there, adds none and says so."""
    data = tmp_path / "data"
    first = json.loads(invoke("index", photos, "--data-dir", data, "--json").stdout)
    again = json.loads(invoke("index", photos, "--data-dir", data, "--json").stdout)
    assert [m["id"] for m in again["indexed"]] == [m["id"] for m in first["indexed"]]
    assert all(m["already_indexed"] for m in again["indexed"])
    assert first["indexed"][0]["external_id"] == str((photos / "a-copy.png").resolve())
    ml = MediaLayer(data)
    assert ml.store.count() == 6
    ml.close()


def test_a_folder_where_a_file_belongs_is_a_usage_error(photos: Path, tmp_path: Path) -> None:
    invoke("index", photos / "a.jpg", "--data-dir", tmp_path / "d")
    for args in (["search", photos, "--data-dir", tmp_path / "d"],
                 ["compare", photos, photos / "a.jpg"]):
        r = invoke(*args)
        assert r.exit_code == 2 and "is a directory" in said(r), r.output
        assert "Traceback" not in r.output


def test_dedupe_refuses_a_missing_folder_and_an_unknown_confidence(photos: Path,
                                                                  tmp_path: Path) -> None:
    missing = invoke("dedupe", tmp_path / "nowhere")
    assert missing.exit_code == 2 and "does not exist" in said(missing)
    foo = invoke("dedupe", photos, "--min-confidence", "foo")
    assert foo.exit_code == 2 and "'foo' is not one of low, medium, high" in said(foo)


def test_commands_name_their_catalog_and_never_search_a_missing_one(
        photos: Path, tmp_path: Path, monkeypatch) -> None:
    """Run from another folder, search used to make an empty ./data and answer "no match"."""
    monkeypatch.delenv("MEDIALAYER_DATA_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    r = invoke("search", photos / "a.jpg")
    assert r.exit_code == 1 and f"no catalog at {tmp_path / 'data' / 'catalog.db'}" in r.stderr
    assert not (tmp_path / "data").exists()
    invoke("keys", "create", "--data-dir", tmp_path / "empty")  # a catalog without media
    r = invoke("search", photos / "a.jpg", "--data-dir", tmp_path / "empty")
    assert r.exit_code == 1 and "no media" in r.stderr
    invoke("index", photos / "a.jpg")  # indexing may make the catalog
    r = invoke("search", photos / "a-copy.png")
    assert r.exit_code == 0 and f"catalog: {tmp_path / 'data' / 'catalog.db'}" in r.stderr
    assert "a.jpg" in r.stdout
def test_jobs_list_shows_the_tenants_jobs(photos: Path, tmp_path: Path) -> None:
    from medialayer.config import Settings
    from medialayer.jobs import submit_csv

    data = tmp_path / "data"
    ml = MediaLayer(data)
    job_id = submit_csv(ml, f"path\n{photos / 'a.jpg'}\n", "default", Settings(),
                        allow_paths=True)
    submit_csv(ml, "url\nhttp://x/1.jpg\n", "other", Settings())
    ml.close()
    r = invoke("jobs", "list", "--data-dir", data, "--json")
    assert r.exit_code == 0, r.output
    assert [(j["job_id"], j["pending"]) for j in json.loads(r.stdout)] == [(job_id, 1)]


def test_rebuild_edges_finds_clusters_of_an_old_catalog(photos: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    invoke("index", photos / "b.jpg", photos / "b-pad.jpg", "--data-dir", data)
    ml = MediaLayer(data)
    with ml.store.session.begin() as s:  # as a catalog from before edges were kept
        s.execute(sa.text("delete from match_edges"))
        s.execute(sa.text("delete from cluster_members"))
        s.execute(sa.text("delete from clusters"))
    assert ml.clusters() == []
    r = invoke("rebuild-edges", "--data-dir", data)
    assert r.exit_code == 0, r.output
    assert [sorted(m.name for m in c.members) for c in ml.clusters()] == [["b-pad.jpg", "b.jpg"]]
    ml.close()


def test_search_prints_the_segments_of_a_video_match(tmp_path: Path) -> None:
    """A trimmed copy's line says which seconds of the catalog video it shows."""
    source = video_synth.slideshow(5, 14.0)
    video_synth.write(source, tmp_path / "demo.mp4", crf=18)
    video_synth.write(video_synth.trimmed(source, 5.0, 6.0), tmp_path / "cut.mp4")
    invoke("index", tmp_path / "demo.mp4", "--data-dir", tmp_path / "d")
    r = invoke("search", tmp_path / "cut.mp4", "--data-dir", tmp_path / "d", "--top-k", "1")
    assert r.exit_code == 0
    lines = [line.split() for line in r.stdout.splitlines() if " -> " in line]
    assert lines and lines[0][0] == "demo.mp4"
    query_start = float(lines[0][1].split("-")[0])
    reference_start = float(lines[0][4].split("-")[0])
    assert query_start == pytest.approx(0.0, abs=1.0)
    assert reference_start == pytest.approx(5.0, abs=1.0)


def test_dedupe_report_shows_poster_frames_and_matched_seconds(tmp_path: Path) -> None:
    """A video cluster's report shows each member's poster frame and, for the pair, which
    seconds of one match which seconds of the other."""
    source = video_synth.slideshow(5, 14.0)
    folder = tmp_path / "videos"
    folder.mkdir()
    video_synth.write(source, folder / "demo.mp4", crf=18)
    video_synth.write(video_synth.trimmed(source, 5.0, 6.0), folder / "cut.mp4")
    html = tmp_path / "report.html"
    r = invoke("dedupe", folder, "--html", html, "--data-dir", tmp_path / "d")
    assert r.exit_code == 0, r.output
    page = html.read_text()
    assert page.count("data:image/jpeg;base64,") == 2
    spans = re.findall(r"a (\d+\.\d)-(\d+\.\d) s = b (\d+\.\d)-(\d+\.\d) s", page)
    assert spans, page
    starts = {float(spans[0][0]), float(spans[0][2])}  # the cut's 0 s is the demo's 5 s
    assert min(starts) == pytest.approx(0.0, abs=1.0)
    assert max(starts) == pytest.approx(5.0, abs=1.0)
