"""Pretrain a 350M Llama-3.2-shaped model for a few hundred steps; save tokens/s, MFU and loss.

What `aira pretrain` does (`aira_async.pretraining.run_pretrain`, the function the CLI calls),
on the 350M preset of `primitives.extrapolate` (``(mA M)×8`` stacked to 32 primitives = 16
Llama layers, D 1024, 16 query / 8 key-value heads, FFN 4096, vocabulary 128,256, tied
embeddings: 383,026,176 parameters), bf16 autocast, AdamW (0.9, 0.95), warmup 5 % + cosine,
clip 1.0.
The text is the project's own story corpus (``tests/assets/lm/make_corpus.py``), tokenized by a
byte-level BPE of 8,192 ids trained on it: no dataset hub is reachable from the GPU machines, and
the figures of interest are throughput and MFU (the corpus is cycled, so the loss only shows that
training works). Runs eager, then with ``torch.compile`` if ``--compile``.

Usage (GPU machine, repo root): ``PYTHONPATH=$PWD python3 bench/pretrain_350m.py --out DIR``.
Writes ``DIR/pretrain-350m-<card>.json`` (card from the device name, e.g. h100, h200).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from aira_async.pretraining import run_pretrain
from primitives.extrapolate import extrapolate
from tests.assets.lm.make_corpus import write_corpus

SOURCE = ("mA", "M") * 8  # a 16-primitive searched arrangement stand-in: Llama's own pattern


def card_name() -> str:
    name = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    for card in ("H200", "H100", "A100"):
        if card in name:
            return card.lower()
    return name.lower().replace(" ", "-")


def one_run(
    cfg_path: Path, corpus: Path, work: Path, *, label: str, args: argparse.Namespace
) -> dict[str, Any]:
    batch = args.batch_size
    while True:
        log: list[dict[str, Any]] = []
        try:
            report = run_pretrain(
                cfg_path,
                tokens=args.steps * batch * args.seq_len,
                data=str(corpus),
                device=args.device,
                out_dir=work / label,
                seq_len=args.seq_len,
                batch_size=batch,
                lr=args.lr,
                vocab_size=8192,
                compile_model=label == "compiled",
                log_every=args.log_every,
                on_log=log.append,
            )
        except torch.cuda.OutOfMemoryError:
            if batch == 1:
                raise
            batch //= 2
            print(f"{label}: out of memory, retrying with batch {batch}", flush=True)
            torch.cuda.empty_cache()
            continue
        for entry in log:
            mfu = "" if entry["mfu"] is None else f" mfu {100 * entry['mfu']:.1f}%"
            print(
                f"{label} step {entry['step']} loss {entry['loss']:.3f}"
                f" {entry['tokens_per_s']:,.0f} tok/s{mfu}",
                flush=True,
            )
        return {"report": asdict(report), "log": log}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--seq-len", type=int, default=2048)
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--log-every", type=int, default=20)
    parser.add_argument("--stories", type=int, default=20_000)
    parser.add_argument("--compile", action="store_true")
    args = parser.parse_args()
    start = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="pretrain350m-"))
    corpus = write_corpus(work / "corpus", n_train=args.stories, n_test=200, seed=0)
    ext = extrapolate(SOURCE, "350M", "stack", seq_len=args.seq_len)
    cfg_path = work / "m350.json"
    cfg_path.write_text(ext.config.to_json())
    print(f"350M: {ext.n_params:,} parameters ({' '.join(ext.layers[:4])} ...)", flush=True)
    results: dict[str, Any] = {
        "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
        "torch": torch.__version__,
        "model_config": ext.config.to_dict(),
        "n_params": ext.n_params,
        "n_params_embedding": ext.n_params_embedding,
        "flops_per_token_forward": ext.flops_per_token,
        "corpus": f"tests/assets/lm/make_corpus.py, {args.stories} stories, BPE 8192",
        "runs": {},
    }
    labels = ["eager", "compiled"] if args.compile else ["eager"]
    args.out.mkdir(parents=True, exist_ok=True)
    target = args.out / f"pretrain-350m-{card_name()}.json"
    for label in labels:
        results["runs"][label] = one_run(cfg_path, corpus, work, label=label, args=args)
        results["wall_s"] = time.perf_counter() - start
        target.write_text(json.dumps(results, indent=2) + "\n")  # saved after every run
        r = results["runs"][label]["report"]
        print(
            f"{label}: {r['steps']} steps x {r['batch_size']} x {r['seq_len']} tokens,"
            f" {r['tokens_per_s']:,.0f} tokens/s, MFU {100 * (r['mfu'] or 0):.1f}%,"
            f" loss {r['loss_first']:.3f} -> {r['final_loss']:.3f},"
            f" peak {r['peak_mem_gb'] or 0:.1f} GiB",
            flush=True,
        )
    print(f"wrote {target}")


if __name__ == "__main__":
    main()
