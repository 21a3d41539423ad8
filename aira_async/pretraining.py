"""`aira pretrain`: read a model config, prepare the corpus, run `primitives.pretrain`.

The model config is a JSON file: a `ModelConfig` object (``ModelConfig.to_json``) or what
``aira extrapolate ... --format json`` writes (the config under ``model_config``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aira_async.errors import ConfigError

if TYPE_CHECKING:  # torch is imported only when a run starts
    from primitives.pretrain import PretrainReport


def read_model_config(path: Path) -> Any:
    """The `ModelConfig` in ``path``. Raises ConfigError naming the file and the problem."""
    from primitives.model import ModelConfig

    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"model config not found: {path}") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: not valid JSON: {exc}") from None
    if isinstance(data, dict) and isinstance(data.get("model_config"), dict):
        data = data["model_config"]
    if not isinstance(data, dict) or "layers" not in data:
        raise ConfigError(f"{path}: expected a ModelConfig object or an extrapolation")
    try:
        return ModelConfig.from_dict(data)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{path}: {exc}") from None


def run_pretrain(
    config_path: Path,
    *,
    tokens: int,
    data: str,
    device: str,
    out_dir: Path,
    seq_len: int = 2048,
    batch_size: int = 4,
    lr: float = 3e-4,
    tokenizer: str = "bpe",
    vocab_size: int = 8192,
    heldout_rows: int = 16,
    compile_model: bool = False,
    log_every: int = 10,
    on_log: Callable[[dict[str, Any]], None] | None = None,
) -> PretrainReport:
    """Pretrain the model of ``config_path`` for ``tokens`` tokens of ``data``.

    Raises:
        ConfigError: a bad model config. ValueError: bad data or settings.
    """
    model_cfg = read_model_config(config_path)
    from primitives.lm_data import load_corpus, parse_source
    from primitives.pretrain import PretrainConfig, pretrain

    cfg = PretrainConfig(
        tokens=tokens,
        seq_len=seq_len,
        batch_size=batch_size,
        lr=lr,
        lr_min=lr / 10,
        compile=compile_model,
        log_every=log_every,
    )
    n_rows = cfg.steps * cfg.batch_size  # enough for one pass; a shorter corpus is cycled
    corpus = load_corpus(
        parse_source(data),
        seq_len=seq_len,
        n_train=n_rows,
        n_test=heldout_rows,
        tokenizer=tokenizer,
        vocab_size=min(vocab_size, model_cfg.vocab_size),
    )
    return pretrain(model_cfg, corpus, cfg, device=device, out_dir=out_dir, on_log=on_log)
