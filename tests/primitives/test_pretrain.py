"""`aira pretrain` on the CPU: a tiny model for a few steps, its JSONL log and summary."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from primitives.model import ModelConfig
from primitives.pretrain import peak_flops
from tests.assets.lm.make_corpus import write_corpus


def test_peak_flops_by_card() -> None:
    assert peak_flops("NVIDIA H100 80GB HBM3") == 989.4e12
    assert peak_flops("NVIDIA H100 PCIe") == 756.0e12
    assert peak_flops("NVIDIA H200") == 989.4e12
    assert peak_flops("cpu") is None


def test_cli_pretrains_a_tiny_model(tmp_path: Path) -> None:
    data = write_corpus(tmp_path / "stories", n_train=200, n_test=40)
    cfg = ModelConfig(
        layers=("mA", "M", "mA", "M"), d_model=32, n_heads=4, n_kv_heads=2, vocab_size=600,
        head_bias=False, tie_embeddings=True,
    )  # fmt: skip
    # What `aira extrapolate --format json` writes: the config under "model_config".
    config = tmp_path / "model.json"
    config.write_text(json.dumps({"target": "tiny", "model_config": cfg.to_dict()}))
    out = tmp_path / "run"
    args = [str(config), "--tokens", "3000", "--data", str(data), "--seq-len", "32"]
    args += ["--batch-size", "8", "--vocab", "400", "--lr", "3e-3", "--out", str(out)]
    args += ["--log-every", "4"]
    result = subprocess.run(
        [sys.executable, "-m", "aira_async", "pretrain", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "tokens/s" in result.stdout and "step" in result.stderr
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [e["step"] for e in log] == [4, 8, 11]  # 3000 // (8 x 32) = 11 steps
    assert {"loss", "lr", "grad_norm", "tokens", "tokens_per_s", "mfu"} <= set(log[0])
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "ok" and summary["steps"] == 11
    assert summary["final_loss"] < summary["loss_first"]
    assert summary["tokenizer_vocab"] <= 400 and summary["heldout_loss"] > 0
    assert ModelConfig.from_json((out / "model.json").read_text()) == cfg
