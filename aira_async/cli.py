"""The `aira` command line: parse arguments, build the config, call into `aira_async`.

This is the only module that prints. Every user mistake (a bad population file, an unknown key,
a missing database, a database of a newer schema, a bad arrangement) ends with one line on stderr
starting with "error:" and exit code 2, before anything is written.
"""

from __future__ import annotations

import asyncio
import gc
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
task_app = typer.Typer(help="AIRS-Bench task directories.", no_args_is_help=True)
app.add_typer(task_app, name="task")
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
    costs = "costs"
    diversity = "diversity"


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
    # Everything imported and loaded so far lives as long as the process: out of the garbage
    # collector's scans, which then pause the event loop for the daemon's own objects only.
    gc.collect()
    gc.freeze()
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
    task_dir: Annotated[
        Path | None,
        typer.Option("--task", help="Search this AIRS-Bench task directory (replaces [task])."),
    ] = None,
) -> None:
    """Start a search daemon on a new archive; prints the leaderboard when it stops."""
    _setup_logging(verbose)
    with _user_errors():
        config = load_population(population)
        if task_dir is not None:
            from aira_async import airs_bench

            config = airs_bench.apply_task_dir(config, airs_bench.load_task_dir(task_dir))
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
    by: Annotated[
        str,
        typer.Option(
            "--by", help="costs: agent, island or model; diversity: agent, island or run."
        ),
    ] = "agent",
) -> None:
    """Read the archive (read-only): top, nodes, lineage or costs (the LLM ledger)."""
    with _user_errors():
        archive = Archive.open(db, read_only=True)
        try:
            if kind is QueryKind.costs:
                rows = views.cost_rows(archive, by=by)
            elif kind is QueryKind.diversity:
                from aira_async.report import diversity_query

                rows = diversity_query(archive, by=by)
            else:
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
    arrangements: Annotated[
        list[str], typer.Argument(help='Layers, e.g. "mA M mA M", or a baseline name; several.')
    ],
    task: Annotated[str, typer.Option("--task", help="mad or one MAD task name.")] = "mad",
    fidelity: Annotated[str, typer.Option("--fidelity", help="smoke or paper.")] = "smoke",
    device: Annotated[str, typer.Option("--device", help="cpu or cuda.")] = "cpu",
    seeds: Annotated[
        list[int] | None,
        typer.Option(
            "--seed",
            metavar="SEED",
            help="Repeat for several seeds (default 0): one job per arrangement and seed.",
        ),
    ] = None,
    split: Annotated[str, typer.Option("--split", help="validation or test.")] = "test",
    format: FormatOpt = Format.table,
    data: Annotated[
        str | None,
        typer.Option("--data", help="LM tasks: hf:ID[:CONFIG], a directory or a file."),
    ] = None,
    fused: Annotated[
        bool,
        typer.Option(
            "--fused", help="MAD: train the arrangements together (stacked weights, one step)."
        ),
    ] = False,
    compile_blocks: Annotated[
        bool, typer.Option("--compile", help="With --fused on CUDA: torch.compile the blocks.")
    ] = False,
    cuda_graph: Annotated[
        bool,
        typer.Option(
            "--cuda-graph/--no-cuda-graph",
            help="With --fused --compile on CUDA: replay the training steps from CUDA graphs.",
        ),
    ] = True,
) -> None:
    """Train and score arrangements (no search); exit 1 unless every one trained (status ok).

    JSON output is one object for one job, a list for several (arrangement-major, then seed).
    With several seeds the table output ends with each arrangement's mean and spread.
    """
    from populations.baselines import resolve

    with _user_errors():
        layer_lists = [resolve(a).layers for a in arrangements]  # layers or baseline names
        from primitives.evaluator import EvalJob
        from primitives.evaluator import evaluate as run_jobs

        jobs = [
            EvalJob(
                layers=layers,
                task=task,
                fidelity=fidelity,
                seed=seed,
                split=split,
                device=device,
                data=data,
            )
            for layers in layer_lists
            for seed in seeds or [0]
        ]
        what = f"{len(jobs)} job{'s' if len(jobs) > 1 else ''}"
        with err.status(f"training {what} on {task} ({fidelity}, {device})"):
            if fused:
                from primitives.fused import evaluate_fused

                results = evaluate_fused(
                    jobs,
                    max_k=len(jobs),
                    compile_blocks=compile_blocks,
                    cuda_graph=compile_blocks and cuda_graph,
                )
            else:
                results = run_jobs(jobs)
    payloads = [views.eval_result_dict(r) for r in results]
    if format is Format.json:
        body = payloads[0] if len(payloads) == 1 else payloads
        sys.stdout.write(json.dumps(body, indent=2) + "\n")
    else:
        for payload in payloads:
            out.print(views.eval_result_table(payload))
        if len(seeds or []) > 1:
            out.print(views.seed_summary_table(payloads))
    raise typer.Exit(0 if all(r.status == "ok" for r in results) else 1)


class AggVariant(StrEnum):
    N_0 = "N_0"
    N_1 = "N_1"
    N_all = "N_all"


class ScoreSource(StrEnum):
    auto = "auto"
    test = "test"
    validation = "validation"


@app.command()
def aggregate(
    db: DbOpt,
    top: Annotated[int, typer.Option("--top", "-k", min=1, help="Best candidates to use.")] = 50,
    variant: Annotated[
        AggVariant, typer.Option("--variant", help="Layers each vote is conditioned on.")
    ] = AggVariant.N_1,
    radius: Annotated[
        int | None, typer.Option("--radius", min=0, help="Hamming linkage (default depth/4).")
    ] = None,
    score: Annotated[
        ScoreSource, typer.Option("--score", help="test (default when present) or validation.")
    ] = ScoreSource.auto,
    format: FormatOpt = Format.table,
) -> None:
    """Composer's aggregator: one robust arrangement from the run's best submissions."""
    from aira_async import composer
    from populations.aggregator import aggregate as run_aggregate

    with _user_errors():
        archive = Archive.open(db, read_only=True)
        try:
            pool = composer.load_submissions(archive, score.value)
        finally:
            archive.close()
        result = run_aggregate(
            pool.submissions, top=top, variant=variant.value, maximize=pool.maximize,
            radius=radius,
        )  # fmt: skip
    payload = composer.aggregate_payload(pool, result)
    if format is Format.json:
        sys.stdout.write(json.dumps(payload, indent=2) + "\n")
    elif format is Format.csv:
        sys.stdout.write(views.to_csv(composer.layer_rows(payload)))
    else:
        headline, decisions = composer.aggregate_tables(payload)
        out.print(headline, highlight=False)
        out.print(decisions)


class ExtrapolateMode(StrEnum):
    stretch = "stretch"
    stack = "stack"


class Target(StrEnum):
    m350 = "350M"
    b1 = "1B"
    b3 = "3B"


@app.command()
def extrapolate(
    arrangement: Annotated[
        str, typer.Argument(help='Layers ("mA M M ...") or a baseline name (llama32, ...).')
    ],
    target: Annotated[Target, typer.Option("--target", "-t", help="Model size.")] = Target.b1,
    mode: Annotated[
        ExtrapolateMode, typer.Option("--mode", "-m", help="stretch runs or stack copies.")
    ] = ExtrapolateMode.stretch,
    depth: Annotated[
        int | None, typer.Option("--depth", min=1, help="Primitives (default: the target's).")
    ] = None,
    seq_len: Annotated[int, typer.Option("--seq-len", min=1, help="For FLOPs.")] = 2048,
    format: FormatOpt = Format.table,
) -> None:
    """A Llama-3.2-shaped model config (350M/1B/3B) from a small arrangement, with exact counts."""
    from aira_async import composer
    from populations.baselines import resolve
    from primitives.extrapolate import extrapolate as run_extrapolate

    with _user_errors():
        layers = resolve(arrangement).layers
        result = run_extrapolate(layers, target.value, mode.value, depth=depth, seq_len=seq_len)
    payload = composer.extrapolate_payload(result)
    if format is Format.table:
        out.print(composer.extrapolate_table(payload))
    else:  # json (csv has no meaning for one config)
        sys.stdout.write(json.dumps(payload, indent=2) + "\n")


@app.command()
def report(
    db: DbOpt,
    out_path: Annotated[Path, typer.Option("--out", "-o", help="HTML file to write.")] = Path(
        "report.html"
    ),
) -> None:
    """Write one self-contained HTML report of the run: plots, leaderboard, diversity."""
    from aira_async.report import write_report

    with _user_errors():
        path = write_report(db, out_path)
    out.print(f"wrote {path}")


@task_app.command("export")
def task_export(
    name: Annotated[str, typer.Argument(help="mad, babistories or dclm.")],
    directory: Annotated[Path, typer.Argument(help="The task directory to write.")],
    fidelity: Annotated[str, typer.Option("--fidelity", help="smoke or paper.")] = "smoke",
    length: Annotated[int, typer.Option("--length", min=1, help="Primitives a submission.")] = 16,
    alphabet: Annotated[str, typer.Option("--alphabet", help="Allowed primitives.")] = "mA M Mb",
    seed: Annotated[int, typer.Option("--seed")] = 0,
    data: Annotated[
        str | None, typer.Option("--data", help="LM tasks: the corpus the scorer reads.")
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing task.")] = False,
) -> None:
    """Write an aira task as an AIRS-Bench task directory (prepare, evaluate, metadata)."""
    from aira_async.airs_bench import export_task
    from aira_async.config import TaskConfig

    with _user_errors():
        task = TaskConfig(
            name=name, fidelity=fidelity, seed=seed, length=length,
            alphabet=tuple(alphabet.split()), data=data,
        )  # fmt: skip
        path = export_task(task, directory, overwrite=force)
    out.print(f"wrote {path}: project_description.md, prepare.py, evaluate_prepare.py,"
              " evaluate.py, metadata.yaml", highlight=False)  # fmt: skip


@app.command()
def pretrain(
    config: Annotated[Path, typer.Argument(help="ModelConfig JSON (aira extrapolate -f json).")],
    tokens: Annotated[int, typer.Option("--tokens", min=1, help="Training tokens.")],
    data: Annotated[str, typer.Option("--data", help="hf:ID[:CONFIG], a directory or a file.")],
    device: Annotated[str, typer.Option("--device", help="cpu or cuda.")] = "cpu",
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Log folder.")] = Path(
        "runs/pretrain"
    ),
    seq_len: Annotated[int, typer.Option("--seq-len", min=1)] = 2048,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1)] = 4,
    lr: Annotated[float, typer.Option("--lr", help="Peak learning rate.")] = 3e-4,
    tokenizer: Annotated[str, typer.Option("--tokenizer", help="bpe or bytes.")] = "bpe",
    vocab: Annotated[int, typer.Option("--vocab", help="BPE ids (at most the model's).")] = 8192,
    compile_model: Annotated[bool, typer.Option("--compile", help="torch.compile.")] = False,
    log_every: Annotated[int, typer.Option("--log-every", min=1)] = 10,
) -> None:
    """A short bf16 pretraining of a model config: loss log (JSONL), tokens/s and MFU."""
    from aira_async.pretraining import run_pretrain

    def show(entry: dict[str, Any]) -> None:
        mfu = "" if entry["mfu"] is None else f"  mfu {100 * entry['mfu']:.1f}%"
        err.print(
            f"step {entry['step']:>6}  loss {entry['loss']:.4f}  lr {entry['lr']:.2e}"
            f"  {entry['tokens_per_s']:,.0f} tok/s{mfu}",
            highlight=False,
        )

    with _user_errors():
        report = run_pretrain(
            config, tokens=tokens, data=data, device=device, out_dir=out_dir, seq_len=seq_len,
            batch_size=batch_size, lr=lr, tokenizer=tokenizer, vocab_size=vocab,
            compile_model=compile_model, log_every=log_every, on_log=show,
        )  # fmt: skip
    mfu = "n/a" if report.mfu is None else f"{100 * report.mfu:.1f}%"
    out.print(
        f"{report.status}: {report.steps} steps, {report.tokens:,} tokens on {report.device};"
        f" {report.n_params:,} parameters; loss {report.loss_first:.3f} -> {report.final_loss:.3f}"
        f"; {report.tokens_per_s:,.0f} tokens/s; MFU {mfu}; logs in {out_dir}",
        highlight=False,
    )
    raise typer.Exit(0 if report.status == "ok" else 1)


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
