"""MAD generators: shapes, token ranges, target placement, determinism, splits, overlap."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from primitives.mad import (
    IGNORE_INDEX,
    PAPER_TASKS,
    TASK_NAMES,
    MadData,
    MadTask,
    make_dataset,
    split_for,
)

# Paper sizes with fewer rows keep the suite fast; the full counts are checked once below.
N_TRAIN, N_TEST = 200, 300


def _small(name: str) -> MadTask:
    return dataclasses.replace(PAPER_TASKS[name], n_train=N_TRAIN, n_test=N_TEST)


@pytest.fixture(scope="module", params=TASK_NAMES)
def data(request: pytest.FixtureRequest) -> MadData:
    return make_dataset(_small(request.param), seed=7)


def test_default_counts_are_the_papers() -> None:
    for task in PAPER_TASKS.values():
        assert (task.n_train, task.n_test) == (800, 1280)
    d = make_dataset(PAPER_TASKS["in_context_recall"])
    assert d.train_inputs.shape == (800, 127) and d.test_inputs.shape == (1280, 127)


def test_shapes_dtypes_and_vocab(data: MadData) -> None:
    task = data.task
    t = task.input_len
    for x, y in (
        (data.train_inputs, data.train_targets),
        (data.train_inputs, data.train_test_targets),
        (data.test_inputs, data.test_targets),
    ):
        assert x.dtype == y.dtype == torch.int64
        assert x.shape == y.shape and x.shape[1] == t
        assert int(x.min()) >= 0 and int(x.max()) < task.vocab_size
        scored = y[y != IGNORE_INDEX]
        assert scored.numel() > 0
        assert int(scored.min()) >= 0 and int(scored.max()) < task.vocab_size
    assert data.train_inputs.shape[0] == N_TRAIN and data.test_inputs.shape[0] == N_TEST


def test_sequence_lengths_follow_mad() -> None:
    expected = {
        "in_context_recall": (16, 127),
        "noisy_in_context_recall": (32, 127),
        "fuzzy_in_context_recall": (16, 127),
        "selective_copying": (16, 256),
        "compression": (16, 32),
        "memorization": (256, 32),
    }
    for name, (vocab, t) in expected.items():
        assert (PAPER_TASKS[name].vocab_size, PAPER_TASKS[name].input_len) == (vocab, t)
    assert PAPER_TASKS["compression"].head == "compression"
    assert all(PAPER_TASKS[n].head == "lm" for n in TASK_NAMES if n != "compression")


def test_determinism_by_seed(data: MadData) -> None:
    again = make_dataset(data.task, seed=7)
    other = make_dataset(data.task, seed=8)
    for name in ("train_inputs", "train_targets", "test_inputs", "test_targets"):
        assert torch.equal(getattr(data, name), getattr(again, name))
    assert not torch.equal(data.train_inputs, other.train_inputs)
    assert not torch.equal(data.test_targets, other.test_targets)


def test_train_test_overlap_below_a_thousandth(data: MadData) -> None:
    train_rows = {tuple(r) for r in data.train_inputs.tolist()}
    shared = sum(tuple(r) in train_rows for r in data.test_inputs.tolist())
    assert shared / data.test_inputs.shape[0] < 1e-3


@pytest.mark.parametrize("name", ["in_context_recall", "noisy_in_context_recall"])
def test_recall_targets(name: str) -> None:
    d = make_dataset(_small(name), seed=3)
    x, y = d.train_inputs, d.train_targets
    # Train: the next token everywhere (inputs are seq[:-1], targets seq[1:]).
    assert torch.equal(x[:, 1:], y[:, :-1]) and bool((y != IGNORE_INDEX).all())
    z = d.test_targets
    xt = d.test_inputs
    scored = z != IGNORE_INDEX
    assert bool(scored[:, -1].all())  # the probe
    assert not bool(scored[:, 1::2].any())  # keys are never test targets
    assert bool(((z[scored] >= 8) & (z[scored] < 16)).all())  # only values, never noise
    assert not bool(scored[:, 0].any())  # the first value's key cannot have appeared before
    # Every scored value's key (the input at that position) appeared at an earlier key slot,
    # and the value is the one that key had there.
    for row in range(20):
        for pos in torch.nonzero(scored[row]).flatten().tolist():
            key = int(xt[row, pos])
            earlier = [p for p in range(0, pos, 2) if int(xt[row, p]) == key]
            assert earlier, (row, pos)
            assert int(xt[row, earlier[0] + 1]) == int(z[row, pos])


def test_noisy_recall_has_noise_pairs() -> None:
    d = make_dataset(_small("noisy_in_context_recall"), seed=3)
    keys = d.train_inputs[:, 0::2]  # (n, 64): the key slot of every pair
    frac = float((keys >= 16).float().mean())
    assert 0.15 < frac < 0.25  # 63 of 64 slots noised with probability 0.2


def test_fuzzy_recall_targets_and_test_keys() -> None:
    d = make_dataset(_small("fuzzy_in_context_recall"), seed=3)
    x, y = d.train_inputs, d.train_targets
    pad = 15
    assert bool((x[:, 0] == pad).any())  # left padding
    assert not bool((y == pad).any())  # padding is never a target
    z = d.test_targets
    scored = z != IGNORE_INDEX
    assert bool(((z[scored] >= 7) & (z[scored] < 15)).all())  # values only
    assert bool(scored[:, -1].all())  # the probe's last value token
    # Test keys are 3-token motifs: every run of key tokens in a test row is 3 long.
    for row in d.test_inputs[:20].tolist():
        run = 0
        for tok in [*row, pad]:
            if tok < 7:
                run += 1
            else:
                assert run in (0, 3), row
                run = 0
    # Train keys vary in length.
    lengths = set()
    for row in x[:20].tolist():
        run = 0
        for tok in [*row, pad]:
            if tok < 7:
                run += 1
            elif run:
                lengths.add(run)
                run = 0
    assert {1, 2, 3} <= lengths


def test_selective_copying_targets() -> None:
    d = make_dataset(_small("selective_copying"), seed=3)
    for x, y in ((d.train_inputs, d.train_targets), (d.test_inputs, d.test_targets)):
        assert bool((y[:, :-16] == IGNORE_INDEX).all()) and bool(
            (y[:, -16:] != IGNORE_INDEX).all()
        )
        assert bool((x[:, -17] == 15).all()) and bool((x[:, -16:] == 14).all())
        # No shift: the last 16 targets are the scattered tokens, in order.
        region = x[:, :-17]
        for row in range(10):
            tokens = region[row][region[row] != 14]
            assert torch.equal(tokens, y[row, -16:])


def test_compression_targets_are_the_input() -> None:
    d = make_dataset(_small("compression"), seed=3)
    assert torch.equal(d.train_inputs, d.train_targets)
    assert torch.equal(d.test_inputs, d.test_targets)
    assert bool((d.train_inputs[:, -1] == 15).all()) and int(d.train_inputs[:, :-1].max()) < 15


def test_memorization_map_is_fixed_and_shared() -> None:
    d = make_dataset(_small("memorization"), seed=3)
    assert d.key_value_map is not None and d.key_value_map.shape == (127,)
    assert len(set(d.key_value_map.tolist())) == 127  # one value per key
    for x, y in ((d.train_inputs, d.train_targets), (d.test_inputs, d.test_targets)):
        assert bool((x[:, 1::2] == 255).all()) and int(x[:, 0::2].max()) < 127
        assert bool((y[:, 0::2] == IGNORE_INDEX).all())
        assert torch.equal(y[:, 1::2], d.key_value_map[x[:, 0::2]])
    # The map does not depend on the row counts (it is drawn first).
    bigger = make_dataset(dataclasses.replace(d.task, n_train=400), seed=3)
    assert bigger.key_value_map is not None
    assert torch.equal(bigger.key_value_map, d.key_value_map)


def test_test_style_targets_on_train_rows() -> None:
    d = make_dataset(_small("in_context_recall"), seed=3)
    scored = d.train_test_targets != IGNORE_INDEX
    assert bool(scored[:, -1].all())
    ratio = float(scored.float().mean())
    assert 0.3 < ratio < 0.5  # values whose key was seen: about 3/8 of all positions


@pytest.mark.parametrize("n_train", [200, 801])
def test_validation_split_is_70_30(n_train: int) -> None:
    d = make_dataset(
        dataclasses.replace(PAPER_TASKS["in_context_recall"], n_train=n_train, n_test=10)
    )
    fit, score = split_for(d, "validation")
    assert len(fit) + len(score) == n_train
    assert abs(len(score) / n_train - 0.3) < 0.01
    assert torch.equal(fit.inputs, d.train_inputs[: len(fit)])
    assert torch.equal(fit.targets, d.train_targets[: len(fit)])
    assert torch.equal(score.inputs, d.train_inputs[len(fit) :])
    assert torch.equal(score.targets, d.train_test_targets[len(fit) :])  # test-style targets
    fit_t, score_t = split_for(d, "test")
    assert torch.equal(fit_t.inputs, d.train_inputs) and torch.equal(
        score_t.targets, d.test_targets
    )
    with pytest.raises(ValueError, match="split"):
        split_for(d, "train")


def test_bad_specs_raise() -> None:
    with pytest.raises(ValueError, match="unknown MAD task"):
        MadTask(name="copying", seq_len=32)
    with pytest.raises(ValueError, match="even"):
        MadTask(name="in_context_recall", seq_len=31)
    with pytest.raises(ValueError, match="too short"):
        MadTask(name="selective_copying", seq_len=10)
