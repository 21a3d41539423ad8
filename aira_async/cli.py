"""The `aira` command line: parse arguments, build the config, call into `aira_async`.

This is the only module that prints. Every user mistake (a bad population file, an unknown key,
a missing database, a database of a newer schema, a bad arrangement) ends with one line on stderr
starting with "error:" and exit code 2, before anything is written.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.live import Live

from aira_async import views
from aira_async.config import load_population, parse_duration
from aira_async.daemon import Daemon, RunSummary, Snapshot
from aira_async.errors import AiraError
from populations.arrangement import ArrangementError
from store import Archive, StoreError, upgrade

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="aira: LLM research agents that discover neural architectures.",
)
db_app = typer.Typer(help="Archive maintenance.", no_args_is_help=True)
app.add_typer(db_app, name="db")
out = Console()
err = Console(stderr=True)
if not out.is_terminal:  # piped or captured: no wrapping at 80 columns
    out = Console(width=200)
if not err.is_terminal:
    err = Console(stderr=True, width=200)

DEFAULT_POPULATION = Path(__file__).resolve().parent.parent / "populations/presets/offline.toml"


class Format(StrEnum):
    table = "table"
    csv = "csv"
    json = "json"


class QueryKind(StrEnum):
    top = "top"
    nodes = "nodes"
    lineage = "lineage"


DbOpt = Annotated[str, typer.Option("--db", help="Path (or SQLAlchemy URL) of the archive.")]
FormatOpt = Annotated[Format, typer.Option("--format", "-f", help="Output format.")]
BudgetOpt = Annotated[
    str | None, typer.Option("--budget", help="Wall-clock budget, e.g. 30m, 24h, 90s.")
]
MaxNodesOpt = Annotated[int | None, typer.Option("--max-nodes", min=1, help="Node cap.")]


@contextmanager
def _user_errors() -> Iterator[None]:
    """Turn the errors a user can cause into one line and exit code 2."""
    try:
        yield
    except (AiraError, StoreError, ArrangementError, ValueError, FileNotFoundError) as exc:
        err.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def _run_daemon(
    make: Callable[[Callable[[Snapshot], None] | None], Daemon], quiet: bool
) -> RunSummary:
    """Run a daemon with a live progress view (a line every 10 s when not on a terminal)."""
    if quiet:
        return asyncio.run(make(None).run())
    if not out.is_terminal:
        last = [0.0, False]

        def line(snapshot: Snapshot) -> None:
            newly_stopping = snapshot.stopping and not last[1]
            if time.monotonic() - last[0] >= 10 or newly_stopping:
                last[0], last[1] = time.monotonic(), snapshot.stopping
                err.print(views.progress_line(snapshot), highlight=False)

        return asyncio.run(make(line).run())
    with Live(console=out, refresh_per_second=4, transient=True) as live:

        def update(snapshot: Snapshot) -> None:
            live.update(views.progress_panel(snapshot))

        return asyncio.run(make(update).run())


def _budget(value: str | None) -> float | None:
    return None if value is None else parse_duration(value, key="--budget")


@app.command()
def run(
    db: DbOpt,
    population: Annotated[
        Path, typer.Option("--population", "-p", help="Population TOML file.")
    ] = DEFAULT_POPULATION,
    budget: BudgetOpt = None,
    max_nodes: MaxNodesOpt = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No live display.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log work.")] = False,
) -> None:
    """Start a search daemon on a new archive; prints the leaderboard when it stops."""
    _setup_logging(verbose)
    with _user_errors():
        config = load_population(population)
        budget_s = _budget(budget)
        summary = _run_daemon(
            lambda show: Daemon(
                config, db, budget_s=budget_s, max_nodes=max_nodes, on_progress=show
            ),
            quiet,
        )
    _print_summary(summary)


@app.command()
def resume(
    db: DbOpt,
    budget: BudgetOpt = None,
    max_nodes: MaxNodesOpt = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Continue the run stored in the archive after a crash, a reboot or a Ctrl-C."""
    _setup_logging(verbose)
    with _user_errors():
        if "://" not in db and not Path(db).exists():
            raise AiraError(f"no archive at {db} (start a run with `aira run --db {db}`)")
        budget_s = _budget(budget)
        summary = _run_daemon(
            lambda show: Daemon(
                None, db, resume=True, budget_s=budget_s, max_nodes=max_nodes, on_progress=show
            ),
            quiet,
        )
    _print_summary(summary)


def _print_summary(summary: RunSummary) -> None:
    out.print(views.summary_text(summary), highlight=False)
    out.print(
        views.table(views.leaderboard_rows(summary.top, summary.agent_names), title="Leaderboard")
    )


@app.command()
def status(db: DbOpt, format: FormatOpt = Format.table) -> None:
    """Budget left, best so far, queue and agents. Exit code 1 if the run died (resume it)."""
    with _user_errors():
        archive = Archive.open(db, read_only=True)
        try:
            report = views.status_report(archive)
        finally:
            archive.close()
    if format is Format.json:
        out.print_json(json.dumps(report))
    else:
        out.print(views.status_text(report), highlight=False)
    raise typer.Exit(1 if report["state"] == "dead" else 0)


@app.command()
def query(
    kind: Annotated[QueryKind, typer.Argument(help="What to list.")],
    db: DbOpt,
    format: FormatOpt = Format.table,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1)] = 20,
    node: Annotated[int | None, typer.Option("--node", help="Node id (lineage).")] = None,
    agent: Annotated[str | None, typer.Option("--agent", help="Only this agent.")] = None,
) -> None:
    """Read the archive (read-only): top, nodes or lineage."""
    with _user_errors():
        archive = Archive.open(db, read_only=True)
        try:
            rows = views.query_rows(archive, kind.value, limit=limit, node=node, agent=agent)
        finally:
            archive.close()
    _emit(rows, format, title=kind.value)


def _emit(rows: list[dict[str, Any]], format: Format, *, title: str) -> None:
    if format is Format.json:
        sys.stdout.write(json.dumps(rows, indent=2) + "\n")
    elif format is Format.csv:
        sys.stdout.write(views.to_csv(rows))
    else:
        out.print(views.table(rows, title=title))


@app.command()
def evaluate(
    arrangement: Annotated[str, typer.Argument(help='Layers, e.g. "mA M mA M".')],
    task: Annotated[str, typer.Option("--task", help="mad or one MAD task name.")] = "mad",
    fidelity: Annotated[str, typer.Option("--fidelity", help="smoke or paper.")] = "smoke",
    device: Annotated[str, typer.Option("--device", help="cpu or cuda.")] = "cpu",
    seed: Annotated[int, typer.Option("--seed")] = 0,
    split: Annotated[str, typer.Option("--split", help="validation or test.")] = "test",
    format: FormatOpt = Format.table,
) -> None:
    """Train and score one arrangement (no search)."""
    from populations.arrangement import Arrangement

    with _user_errors():
        layers = Arrangement.parse(arrangement).layers
        from primitives.evaluator import EvalJob
        from primitives.evaluator import evaluate as run_jobs

        job = EvalJob(
            layers=layers, task=task, fidelity=fidelity, seed=seed, split=split, device=device
        )
        with err.status(f"training {len(layers)} layers on {task} ({fidelity}, {device})"):
            (result,) = run_jobs([job])
    payload = views.eval_result_dict(result)
    if format is Format.json:
        sys.stdout.write(json.dumps(payload, indent=2) + "\n")
    else:
        out.print(views.eval_result_table(payload))
    raise typer.Exit(0 if result.status == "ok" else 1)


@db_app.command("upgrade")
def db_upgrade(db: DbOpt) -> None:
    """Bring an archive's schema up to this version of aira."""
    with _user_errors():
        before, after = upgrade(db)
    out.print(f"{db}: schema {before} -> {after}")


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    command: Callable[..., Any] = typer.main.get_command(app)
    command(args=argv, prog_name="aira")
