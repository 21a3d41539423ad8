"""Three islands end to end: migrants reach the receivers' trees as references, each stored once,
the collapse monitor responds, a resume restores every imported node, and the report shows it."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
import textwrap
import zlib
from collections import Counter
from pathlib import Path

import pytest

from aira_async.config import load_population
from aira_async.daemon import Daemon
from aira_async.report import build_report, diversity_query
from populations import diversity
from populations.records import Operator
from store import Archive

POPULATION = """\
[run]
name = "islands"
seed = 1
budget = "5m"
shutdown_grace_s = 10
heartbeat_s = 0.2

[task]
name = "synthetic"
fidelity = "exact"
seed = 3
length = 12
test_eval = false

[evaluation]
backend = "inline"
workers = 2
timeout_s = 30

[[islands]]
name = "a"

[[islands]]
name = "b"

[[islands]]
name = "c"

[migration]
topology = "ring"
every_nodes = 6
top_k = 2

[collapse]
every_nodes = 10
window = 10
min_entropy = 0.95
response = "reseed"

[[agents]]
name = "evo-greedy"
island = "a"
proposer = "evolution"
policy = "greedy"

[[agents]]
name = "evo-mcts"
island = "b"
proposer = "evolution"
policy = "mcts"
[agents.policy_params]
num_children = 3

[[agents]]
name = "random-greedy"
island = "c"
proposer = "random"
policy = "greedy"
"""


def run_daemon(db: Path, population: Path | None, max_nodes: int) -> Daemon:
    config = None if population is None else load_population(population)
    daemon = Daemon(
        config, str(db), resume=population is None, max_nodes=max_nodes, install_signals=False
    )
    asyncio.run(daemon.run())
    return daemon


@pytest.fixture(scope="module")
def population(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("islands") / "population.toml"
    path.write_text(textwrap.dedent(POPULATION))
    return path


@pytest.fixture(scope="module")
def finished_run(population: Path) -> tuple[Path, Daemon]:
    db = population.parent / "run.db"
    return db, run_daemon(db, population, max_nodes=90)


def test_migrants_reach_receivers_once_as_references(finished_run: tuple[Path, Daemon]) -> None:
    db, daemon = finished_run
    with Archive.open(db, read_only=True) as archive:
        run = archive.get_run()
        nodes = archive.nodes(run.run_id)
        migrations = archive.migrations(run.run_id)
        island_of = {a.agent_id: a.island for a in archive.agents(run.run_id)}
        received = {
            i.name: {n.node_id for n in archive.received(run.run_id, i.island_id)}
            for i in archive.islands(run.run_id)
        }
        events = Counter(e.kind for e in archive.events(run.run_id))
    assert len(nodes) == 90 and all(n.operator is not Operator.MIGRATE for n in nodes)
    pairs = [(m.node_id, m.target_island) for m in migrations]
    assert migrations and len(pairs) == len(set(pairs))  # each migrant stored once per island
    by_id = {n.node_id: n for n in nodes}
    for m in migrations:  # never back to the island it came from; only good nodes travel
        assert island_of[by_id[m.node_id].agent_id] != m.target_island
        assert by_id[m.node_id].is_good
    assert {m.policy for m in migrations} <= {"ring:top2", "reseed"}
    assert events["migration"] >= 3 and events["collapse"] >= 1
    ring_flows = {(m.source_island, m.target_island) for m in migrations if m.policy != "reseed"}
    assert ring_flows <= {("a", "b"), ("b", "c"), ("c", "a")}
    for runner in daemon._runners:
        imported = {r.node_id for r in runner.tree.imported()}
        island = island_of[runner.agent_id]
        assert island is not None and imported and imported <= received[island]
    migrant_children, _ = diversity.migration_effect(nodes)
    assert migrant_children.n_children > 0  # receivers improved migrants


def test_resume_restores_imported_nodes(population: Path, tmp_path: Path) -> None:
    db = tmp_path / "resumed.db"
    run_daemon(db, population, max_nodes=45)
    with Archive.open(db, read_only=True) as archive:
        run = archive.get_run()
        received = {
            i.name: {n.node_id for n in archive.received(run.run_id, i.island_id)}
            for i in archive.islands(run.run_id)
        }
        island_of = {a.agent_id: a.island for a in archive.agents(run.run_id)}
    assert any(received.values())
    again = run_daemon(db, None, max_nodes=45)  # nothing left to do: the trees as rebuilt
    for runner in again._runners:
        island = island_of[runner.agent_id]
        assert island is not None
        assert {r.node_id for r in runner.tree.imported()} == received[island]
    run_daemon(db, None, max_nodes=70)  # and the search goes on, exchanging as before
    with Archive.open(db, read_only=True) as archive:
        migrations = archive.migrations(archive.get_run().run_id)
        assert len(archive.nodes(archive.get_run().run_id)) == 70
    pairs = [(m.node_id, m.target_island) for m in migrations]
    assert len(pairs) == len(set(pairs)) and len(migrations) > sum(map(len, received.values()))


def test_query_and_report(finished_run: tuple[Path, Daemon], tmp_path: Path) -> None:
    db, _ = finished_run
    with Archive.open(db, read_only=True) as archive:
        rows = diversity_query(archive, by="island")
        assert [r["island"] for r in rows] == ["a", "b", "c"]
        assert sum(r["n_nodes"] for r in rows) == 90
        assert diversity_query(archive, by="run")[0]["n_nodes"] == 90
        with pytest.raises(ValueError, match="--by"):
            diversity_query(archive, by="model")
        text = build_report(archive)
    assert text.count("<svg") == 6 and 'src="http' not in text and "<script" not in text
    titles = ("Best validation fitness", "Primitive frequency", "Pairwise Hamming", "Tree size",
              "Migration flows", "children of migrants", "Leaderboard")  # fmt: skip
    assert all(title in text for title in titles)


def _png_rgb(path: Path) -> tuple[int, int, list[bytes]]:
    """Rows of RGB bytes of an 8-bit RGB/RGBA non-interlaced PNG (what Chromium writes)."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, width, height, channels = 8, b"", 0, 0, 0
    while pos < len(data):
        length = int.from_bytes(data[pos : pos + 4], "big")
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            width, height = int.from_bytes(body[:4], "big"), int.from_bytes(body[4:8], "big")
            assert body[8] == 8 and body[9] in (2, 6) and body[12] == 0, "unsupported PNG"
            channels = 3 if body[9] == 2 else 4
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    raw, stride, rows = zlib.decompress(idat), width * channels, []
    prev = bytearray(stride)
    for y in range(height):
        kind, line = (
            raw[y * (stride + 1)],
            bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)]),
        )
        for i in range(stride):
            a = line[i - channels] if i >= channels else 0
            b, c = prev[i], prev[i - channels] if i >= channels else 0
            if kind == 1:
                line[i] = (line[i] + a) & 255
            elif kind == 2:
                line[i] = (line[i] + b) & 255
            elif kind == 3:
                line[i] = (line[i] + (a + b) // 2) & 255
            elif kind == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        prev = line
        rows.append(bytes(v for i, v in enumerate(line) if i % channels < 3))
    return width, height, rows


def test_report_renders_in_headless_chromium(
    finished_run: tuple[Path, Daemon], tmp_path: Path
) -> None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("chromium is not installed (`apt-get install chromium`; .ci/run installs it)")
    db, _ = finished_run
    html_path, png = tmp_path / "report.html", tmp_path / "report.png"
    done = subprocess.run(
        [sys.executable, "-m", "aira_async", "report", "--db", str(db), "--out", str(html_path)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    browser = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
               f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1400,1500"]  # fmt: skip
    dom = subprocess.run(
        [*browser, "--dump-dom", html_path.as_uri()],
        capture_output=True, text=True, timeout=120, check=True,
    ).stdout  # fmt: skip
    assert dom.count("<svg") == 6 and dom.count('data-chart="heatmap"') == 2
    subprocess.run(
        [*browser, f"--screenshot={png}", html_path.as_uri()],
        capture_output=True, timeout=120, check=True,
    )  # fmt: skip
    width, height, rows = _png_rgb(png)
    assert (width, height) == (1400, 1500)
    plots = rows[130:1150]  # the grid of plots under the title
    pixels = [row[i : i + 3] for row in plots for i in range(0, len(row), 3 * 4)]  # every 4th px
    ink = sum(p != b"\xff\xff\xff" for p in pixels) / len(pixels)
    blue = sum(abs(p[0] - 31) + abs(p[1] - 119) + abs(p[2] - 180) < 30 for p in pixels)
    orange = sum(abs(p[0] - 255) + abs(p[1] - 127) + abs(p[2] - 14) < 30 for p in pixels)
    assert ink > 0.1, f"the plot area is nearly blank ({ink:.1%} non-white)"
    assert blue > 500 and orange > 200, (blue, orange)  # bars and lines in the palette's colours
