"""MAD synthetic tasks (Poli et al. 2024): seeded generators, train/test targets, splits.

Six token-level tasks probe what a layer arrangement can do. Every task draws its train set and
then its test set from one ``numpy.random.Generator`` seeded with the dataset seed, as MAD does
(MAD's seed is 12345, :data:`MAD_DATA_SEED`). Targets that are not scored hold
:data:`IGNORE_INDEX` (-100).

========================  =====  ====  ========================================================
task                      V      S     sequence (S tokens generated; inputs/targets length T)
========================  =====  ====  ========================================================
in_context_recall         16     128   keys 0-7, values 8-15, a fresh key->value map per row:
                                       63 pairs then a probe pair whose key appeared earlier.
                                       Shifted: inputs = seq[:-1], targets = seq[1:] (T = 127).
noisy_in_context_recall   32     128   as above; each context pair is replaced by two noise
                                       tokens (16-31) with probability 0.2. Shifted (T = 127).
fuzzy_in_context_recall   16     128   pad 15, keys 0-6, values 7-14; keys and values are
                                       ordered 1-3-token motifs without repeated tokens
                                       (8 keys a row); test keys are always 3 tokens; a probe
                                       pair repeats a seen key; left-padded. Shifted (T = 127).
selective_copying         16     256   16 tokens (0-13) scattered in order among blanks (14),
                                       a trigger (15), 16 blanks; targets on the last 16
                                       positions only. Not shifted (T = 256).
compression               16     32    31 random tokens (0-14) and a compression token (15);
                                       targets = the whole input (head "compression", T = 32).
memorization              256    32    16 (key, insert) pairs, keys 0-126, insert token 255;
                                       the target at each insert is the key's value (127-254)
                                       under ONE fixed map shared by train and test. T = 32.
========================  =====  ====  ========================================================

Train vs test targets. Train targets teach: the three recall tasks predict the next token
everywhere (fuzzy: except padding). Test targets score only what is recallable: a value whose
key appeared earlier in the row, plus the probe (noise positions never count). Selective
copying, compression and memorization use the same targets for both.

Sample counts. The proxy uses 800 train and 1,280 test rows for every task, the paper's MAD
proxy; memorization included (MAD's own default trains memorization on 256 rows: the proxy uses
the same 800 as the other tasks, so one ``n_train`` applies to all six).

Validation split (:func:`split_for`). The paper validates on a 70:30 split of train. The fit
set is the first 70 % of the train rows with their train targets. The score set is the other
30 % of the train rows, scored with *test-style* targets computed from the same rows (every
generator returns both target styles for each row, drawing no extra randomness), so validation
measures the same thing as test without touching a test row. For fuzzy recall the held-out
rows keep train-style key lengths (1-3 tokens): validation does not see the length shift that
test does. Test labels stay inside the evaluator; results carry only scores.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from itertools import permutations

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "HEADS",
    "IGNORE_INDEX",
    "MAD_DATA_SEED",
    "PAPER_TASKS",
    "SPLITS",
    "TASK_NAMES",
    "MadData",
    "MadSplit",
    "MadTask",
    "make_dataset",
    "split_for",
]

IGNORE_INDEX = -100
MAD_DATA_SEED = 12345
VALIDATION_FRACTION = 0.3
SPLITS = ("validation", "test")
HEADS = ("lm", "compression")

TASK_NAMES = (
    "in_context_recall",
    "noisy_in_context_recall",
    "fuzzy_in_context_recall",
    "selective_copying",
    "compression",
    "memorization",
)
_VOCAB = {
    "in_context_recall": 16,
    "noisy_in_context_recall": 32,
    "fuzzy_in_context_recall": 16,
    "selective_copying": 16,
    "compression": 16,
    "memorization": 256,
}
_SHIFTED = frozenset({"in_context_recall", "noisy_in_context_recall", "fuzzy_in_context_recall"})

# In-context recall and its noisy variant.
_RECALL_KEYS = 8  # keys 0-7, values 8-15
_NOISE_LO, _NOISE_HI = 16, 32
_NOISE_PROB = 0.2
# Fuzzy recall.
_FUZZY_PAD = 15
_FUZZY_KEY_TOKENS = 7  # 0-6
_FUZZY_VALUE_LO, _FUZZY_VALUE_TOKENS = 7, 8  # 7-14
_FUZZY_MAX_MOTIF = 3
# Selective copying.
_COPY_TOKENS, _COPY_BLANK, _COPY_TRIGGER = 14, 14, 15
# Compression.
_COMPRESS_TOKENS, _COMPRESS_TOKEN = 15, 15
# Memorization.
_MEMO_KEYS, _MEMO_VALUE_LO, _MEMO_INSERT = 127, 127, 255


@dataclass(frozen=True, kw_only=True)
class MadTask:
    """One MAD task at one size.

    Attributes:
        name: one of :data:`TASK_NAMES`.
        seq_len: S, tokens generated per row; models see ``input_len`` of them.
        n_train: train rows (800 in the paper's proxy).
        n_test: test rows (1,280).
        n_copy: selective copying only: tokens to copy (16).
        n_keys: fuzzy recall only: distinct key motifs per row (8).
    """

    name: str
    seq_len: int
    n_train: int = 800
    n_test: int = 1280
    n_copy: int = 16
    n_keys: int = 8

    def __post_init__(self) -> None:
        if self.name not in TASK_NAMES:
            raise ValueError(f"unknown MAD task {self.name!r}; expected one of {TASK_NAMES}")
        if self.n_train < 2 or self.n_test < 1:
            raise ValueError(f"{self.name}: need n_train >= 2 and n_test >= 1")
        minimum = {"selective_copying": self.n_copy + 2, "fuzzy_in_context_recall": 16}
        if self.seq_len < minimum.get(self.name, 4):
            raise ValueError(f"{self.name}: seq_len {self.seq_len} is too short")
        paired = ("in_context_recall", "noisy_in_context_recall", "memorization")
        if self.name in paired and self.seq_len % 2:
            raise ValueError(f"{self.name}: seq_len must be even, got {self.seq_len}")
        if self.n_copy < 1:
            raise ValueError(f"n_copy must be positive, got {self.n_copy}")
        if not 1 <= self.n_keys <= 64:
            raise ValueError(f"n_keys must be in 1..64, got {self.n_keys}")

    @property
    def vocab_size(self) -> int:
        """V, fixed per task by its token layout."""
        return _VOCAB[self.name]

    @property
    def head(self) -> str:
        """The model head: "compression" for the compression task, else "lm"."""
        return "compression" if self.name == "compression" else "lm"

    @property
    def input_len(self) -> int:
        """T, the length of every input and target row (S - 1 for the shifted tasks)."""
        return self.seq_len - 1 if self.name in _SHIFTED else self.seq_len


PAPER_TASKS: dict[str, MadTask] = {
    "in_context_recall": MadTask(name="in_context_recall", seq_len=128),
    "noisy_in_context_recall": MadTask(name="noisy_in_context_recall", seq_len=128),
    "fuzzy_in_context_recall": MadTask(name="fuzzy_in_context_recall", seq_len=128),
    "selective_copying": MadTask(name="selective_copying", seq_len=256),
    "compression": MadTask(name="compression", seq_len=32),
    "memorization": MadTask(name="memorization", seq_len=32),
}


@dataclass(frozen=True, eq=False)
class MadSplit:
    """Rows of one side of a split. inputs, targets: (n, T) int64."""

    inputs: Tensor
    targets: Tensor

    def __len__(self) -> int:
        return int(self.inputs.shape[0])


@dataclass(frozen=True, eq=False)
class MadData:
    """One generated task. Every tensor is int64 on the CPU.

    Attributes:
        task: the spec that made it.
        seed: the generator seed.
        train_inputs, train_targets: (n_train, T); train-style targets.
        train_test_targets: (n_train, T); test-style targets of the train rows (validation).
        test_inputs, test_targets: (n_test, T); test-style targets.
        key_value_map: memorization only: (127,) value of each key; else None.
    """

    task: MadTask
    seed: int
    train_inputs: Tensor
    train_targets: Tensor
    train_test_targets: Tensor
    test_inputs: Tensor
    test_targets: Tensor
    key_value_map: Tensor | None = None


def make_dataset(
    task: MadTask, n_train: int | None = None, n_test: int | None = None, seed: int = MAD_DATA_SEED
) -> MadData:
    """Generate a task's train then test rows from one generator seeded with ``seed``.

    Args:
        task: the task spec.
        n_train, n_test: row counts; default to ``task.n_train`` / ``task.n_test``.
        seed: generator seed (MAD uses 12345).

    Returns:
        The dataset. The same (task, counts, seed) always gives identical tensors.
    """
    if n_train is not None or n_test is not None:
        task = dataclasses.replace(
            task,
            n_train=task.n_train if n_train is None else n_train,
            n_test=task.n_test if n_test is None else n_test,
        )
    rng = np.random.default_rng(seed)
    value_map = None
    if task.name == "memorization":  # the one map, drawn before any row
        value_map = rng.permutation(256 - _MEMO_VALUE_LO - 1)[:_MEMO_KEYS] + _MEMO_VALUE_LO
    x_tr, y_tr, z_tr = _generate(task, rng, task.n_train, test_mode=False, value_map=value_map)
    x_te, _, z_te = _generate(task, rng, task.n_test, test_mode=True, value_map=value_map)
    return MadData(
        task=task,
        seed=seed,
        train_inputs=_tensor(x_tr),
        train_targets=_tensor(y_tr),
        train_test_targets=_tensor(z_tr),
        test_inputs=_tensor(x_te),
        test_targets=_tensor(z_te),
        key_value_map=None if value_map is None else _tensor(value_map),
    )


def split_for(data: MadData, split: str) -> tuple[MadSplit, MadSplit]:
    """The (fit, score) sets of a split.

    "validation": fit on the first 70 % of train (train targets), score on the other 30 % with
    test-style targets. "test": fit on all of train, score on test.

    Raises:
        ValueError: unknown split.
    """
    if split == "test":
        fit = MadSplit(data.train_inputs, data.train_targets)
        return fit, MadSplit(data.test_inputs, data.test_targets)
    if split == "validation":
        n = int(data.train_inputs.shape[0])
        n_fit = n - max(1, math.floor(n * VALIDATION_FRACTION + 0.5))
        fit = MadSplit(data.train_inputs[:n_fit], data.train_targets[:n_fit])
        score = MadSplit(data.train_inputs[n_fit:], data.train_test_targets[n_fit:])
        return fit, score
    raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")


def _tensor(array: np.ndarray) -> Tensor:
    return torch.from_numpy(np.ascontiguousarray(array, dtype=np.int64))


_Rows = tuple[np.ndarray, np.ndarray, np.ndarray]  # inputs, train targets, test targets


def _generate(
    task: MadTask,
    rng: np.random.Generator,
    n: int,
    *,
    test_mode: bool,
    value_map: np.ndarray | None,
) -> _Rows:
    if task.name == "in_context_recall":
        return _recall(rng, n, task.seq_len, noise_prob=0.0)
    if task.name == "noisy_in_context_recall":
        return _recall(rng, n, task.seq_len, noise_prob=_NOISE_PROB)
    if task.name == "fuzzy_in_context_recall":
        return _fuzzy(rng, n, task.seq_len, task.n_keys, test_mode=test_mode)
    if task.name == "selective_copying":
        return _selective_copying(rng, n, task.seq_len, task.n_copy)
    if task.name == "compression":
        return _compression(rng, n, task.seq_len)
    assert value_map is not None
    return _memorization(rng, n, task.seq_len, value_map)


def _recall(rng: np.random.Generator, n: int, seq_len: int, *, noise_prob: float) -> _Rows:
    """(Noisy) in-context recall: n_ctx context pairs, then a probe pair; shifted by one."""
    n_pairs = seq_len // 2
    n_ctx = n_pairs - 1
    rows = np.arange(n)
    keys = rng.integers(0, _RECALL_KEYS, size=(n, n_ctx))  # (n, n_ctx)
    values_of = rng.permuted(np.tile(np.arange(_RECALL_KEYS, 2 * _RECALL_KEYS), (n, 1)), axis=1)
    values = np.take_along_axis(values_of, keys, axis=1)  # (n, n_ctx)
    noisy = np.zeros((n, n_ctx), dtype=bool)
    if noise_prob > 0:
        noisy = rng.random((n, n_ctx)) < noise_prob
        noisy[noisy.all(axis=1), 0] = False  # every row keeps one real pair to probe
        noise = rng.integers(_NOISE_LO, _NOISE_HI, size=(n, n_ctx, 2))
        keys_shown = np.where(noisy, noise[..., 0], keys)
        values_shown = np.where(noisy, noise[..., 1], values)
    else:
        keys_shown, values_shown = keys, values
    real = ~noisy
    # The probe repeats a uniformly chosen real context pair.
    probe_slot = np.where(real, rng.random((n, n_ctx)), -1.0).argmax(axis=1)  # (n,)
    probe_key = keys[rows, probe_slot]
    probe_value = values_of[rows, probe_key]
    pair_keys = np.concatenate([keys_shown, probe_key[:, None]], axis=1)  # (n, n_pairs)
    pair_values = np.concatenate([values_shown, probe_value[:, None]], axis=1)
    seq = np.stack([pair_keys, pair_values], axis=2).reshape(n, 2 * n_pairs)  # (n, S)
    # A context value is recallable when its key was shown in an earlier real pair.
    shown = (keys[..., None] == np.arange(_RECALL_KEYS)) & real[..., None]  # (n, n_ctx, 8)
    shown_before = np.cumsum(shown, axis=1) - shown  # (n, n_ctx, 8): count in earlier slots
    seen = np.take_along_axis(shown_before, keys[..., None], axis=2)[..., 0] > 0
    scored = np.concatenate([seen & real, np.ones((n, 1), dtype=bool)], axis=1)  # (n, n_pairs)
    test_targets = np.full((n, seq_len - 1), IGNORE_INDEX, dtype=np.int64)
    # The value of pair p sits at seq[2p + 1], so it is the target at position 2p.
    test_targets[:, 0::2] = np.where(scored, pair_values, IGNORE_INDEX)
    return seq[:, :-1], seq[:, 1:], test_targets


def _motif_tables(n_tokens: int, offset: int) -> list[np.ndarray]:
    """All ordered motifs of 1..3 distinct tokens, one (count, length) table per length."""
    return [
        np.array(list(permutations(range(offset, offset + n_tokens), length)), dtype=np.int64)
        for length in range(1, _FUZZY_MAX_MOTIF + 1)
    ]


_FUZZY_KEYS = _motif_tables(_FUZZY_KEY_TOKENS, 0)
_FUZZY_VALUES = _motif_tables(_FUZZY_VALUE_TOKENS, _FUZZY_VALUE_LO)


def _draw_motifs(
    rng: np.random.Generator, tables: list[np.ndarray], count: int, *, fixed_len: int | None
) -> list[np.ndarray]:
    """``count`` distinct motifs: a length 1-3 uniformly (or ``fixed_len``), then a motif."""
    lengths = (
        np.full(count, fixed_len) if fixed_len else rng.integers(1, _FUZZY_MAX_MOTIF + 1, count)
    )
    motifs: list[np.ndarray] = []
    for length, table in enumerate(tables, start=1):
        k = int((lengths == length).sum())
        if k == 0:
            continue
        if k > len(table):  # more short motifs than exist: fall back to the longest length
            lengths[np.flatnonzero(lengths == length)[len(table) :]] = _FUZZY_MAX_MOTIF
            k = len(table)
        motifs.extend(table[rng.choice(len(table), size=k, replace=False)])
    order = rng.permutation(len(motifs))
    return [motifs[i] for i in order]


def _fuzzy(
    rng: np.random.Generator, n: int, seq_len: int, n_keys: int, *, test_mode: bool
) -> _Rows:
    """Fuzzy in-context recall: motif pairs, a probe pair, left padding; shifted by one."""
    seq = np.full((n, seq_len), _FUZZY_PAD, dtype=np.int64)
    value_pos = np.zeros((n, seq_len), dtype=bool)  # value tokens that are recallable
    budget = seq_len - 2 * _FUZZY_MAX_MOTIF  # leave room for the longest probe pair
    for i in range(n):
        keys = _draw_motifs(rng, _FUZZY_KEYS, n_keys, fixed_len=3 if test_mode else None)
        values = _draw_motifs(rng, _FUZZY_VALUES, n_keys, fixed_len=None)
        body: list[int] = []
        recall: list[bool] = []
        seen: list[int] = []
        for k in rng.integers(0, n_keys, size=seq_len):  # more draws than pairs can fit
            key, value = keys[k], values[k]
            if len(body) + len(key) + len(value) > budget:
                break
            body.extend(key.tolist())
            body.extend(value.tolist())
            recall.extend([False] * len(key) + [bool(k in seen)] * len(value))
            seen.append(int(k))
        probe = seen[int(rng.integers(0, len(seen)))]
        body.extend(keys[probe].tolist())
        body.extend(values[probe].tolist())
        recall.extend([False] * len(keys[probe]) + [True] * len(values[probe]))
        seq[i, seq_len - len(body) :] = body
        value_pos[i, seq_len - len(body) :] = recall
    targets = seq[:, 1:]
    train_targets = np.where(targets == _FUZZY_PAD, IGNORE_INDEX, targets)
    test_targets = np.where(value_pos[:, 1:], targets, IGNORE_INDEX)
    return seq[:, :-1], train_targets, test_targets


def _selective_copying(rng: np.random.Generator, n: int, seq_len: int, n_copy: int) -> _Rows:
    """Tokens scattered among blanks, a trigger, n_copy blanks that must output them in order."""
    region = seq_len - n_copy - 1
    pos = np.sort(rng.random((n, region)).argsort(axis=1)[:, :n_copy], axis=1)  # (n, n_copy)
    tokens = rng.integers(0, _COPY_TOKENS, size=(n, n_copy))
    inputs = np.full((n, seq_len), _COPY_BLANK, dtype=np.int64)
    inputs[np.arange(n)[:, None], pos] = tokens
    inputs[:, region] = _COPY_TRIGGER
    targets = np.full((n, seq_len), IGNORE_INDEX, dtype=np.int64)
    targets[:, seq_len - n_copy :] = tokens
    return inputs, targets, targets.copy()


def _compression(rng: np.random.Generator, n: int, seq_len: int) -> _Rows:
    """Random tokens closed by a compression token; reconstruct the whole row."""
    tokens = rng.integers(0, _COMPRESS_TOKENS, size=(n, seq_len - 1))
    inputs = np.concatenate([tokens, np.full((n, 1), _COMPRESS_TOKEN)], axis=1)  # (n, S)
    return inputs, inputs.copy(), inputs.copy()


def _memorization(rng: np.random.Generator, n: int, seq_len: int, value_map: np.ndarray) -> _Rows:
    """(key, insert) pairs; the target at each insert token is the fixed map's value."""
    keys = rng.integers(0, _MEMO_KEYS, size=(n, seq_len // 2))  # (n, S/2)
    inserts = np.full_like(keys, _MEMO_INSERT)
    inputs = np.stack([keys, inserts], axis=2).reshape(n, seq_len)  # (n, S)
    targets = np.full((n, seq_len), IGNORE_INDEX, dtype=np.int64)
    targets[:, 1::2] = value_map[keys]
    return inputs, targets, targets.copy()
