"""Fused evaluation (primitives.fused) equals the naive per-candidate path on the CPU (fp32)."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
import torch
import torch.nn.functional as F

from primitives.evaluator import FIDELITIES, EvalJob, evaluate
from primitives.fused import (
    FusedArrangements,
    GraphedTrainStep,
    _ChannelsFirstProduct,
    _FromChannelsFirstProduct,
    _fused_loss,
    _layout_product,
    capturable_adamw,
    evaluate_fused,
    fused_models,
    fused_train_step,
    set_lr,
)
from primitives.mad import IGNORE_INDEX
from primitives.model import ModelConfig, build_model
from tests.primitives.kernel_checks import interpreter_test

SHAPE: dict[str, Any] = {
    "d_model": 32,
    "n_heads": 4,
    "d_state": 16,
    "headdim": 16,
    "chunk_size": 8,
}
ARRANGEMENTS = [("mA", "M", "Mb"), ("Mb", "M", "mA"), ("M", "M", "M"), ("mA", "Mb", "Mb")]
# the stream's candidate order changes at layers 0 and 2 (each group a contiguous slice), and
# layers 1 and 3, one primitive for all, keep the order they find: their stacked weights follow it
REGROUPED = [
    ("mA", "M", "Mb", "M"),
    ("Mb", "M", "mA", "M"),
    ("M", "M", "M", "M"),
    ("mA", "M", "M", "M"),
    ("Mb", "M", "M", "M"),
]
SEED = 7


def _cfgs(
    head: str = "lm", chunk_size: int = 8, arrangements: list[tuple[str, ...]] = ARRANGEMENTS
) -> list[ModelConfig]:
    """Inputs are 12 long: chunk size 8 takes Mamba2's chunked scan, 16 its one-chunk form."""
    extra: dict[str, Any] = {"head": "compression", "seq_len": 12} if head == "compression" else {}
    shape = SHAPE | {"chunk_size": chunk_size}
    return [ModelConfig(layers=a, vocab_size=11, **shape, **extra) for a in arrangements]


def _naive(cfg: ModelConfig) -> torch.nn.Module:
    torch.manual_seed(SEED)
    return build_model(cfg)


@pytest.mark.parametrize("arrangements", [ARRANGEMENTS, REGROUPED])
@pytest.mark.parametrize("chunk_size", [8, 16])
@pytest.mark.parametrize("head", ["lm", "compression"])
def test_forward_matches_each_naive_model(
    head: str, chunk_size: int, arrangements: list[tuple[str, ...]]
) -> None:
    cfgs = _cfgs(head, chunk_size, arrangements)
    fused = fused_models(cfgs, [SEED] * len(cfgs))
    tokens = torch.randint(0, 11, (3, 12), generator=torch.Generator().manual_seed(0))
    out = fused(tokens)  # (K, B, T, V)
    assert out.shape == (len(cfgs), 3, 12, 11)
    for j, cfg in enumerate(cfgs):
        torch.testing.assert_close(out[j], _naive(cfg)(tokens), atol=1e-5, rtol=1e-5)


def test_the_stream_is_reordered_only_where_the_groups_change() -> None:
    fused = fused_models(_cfgs(arrangements=REGROUPED), [SEED] * len(REGROUPED))
    moved = {name for name, _ in fused.named_buffers() if name.startswith("regroup")}
    assert moved == {
        f"{n}{inv}" for n in ("regroup_0", "regroup_2", "regroup_out") for inv in ("", "_inv")
    }
    assert [[(g.kind, g.slots) for g in groups] for groups in fused.layer_groups] == [
        [("mA", (0, 3)), ("Mb", (1, 4)), ("M", (2,))],
        [("M", (0, 3, 1, 4, 2))],
        [("Mb", (0,)), ("M", (3, 4, 2)), ("mA", (1,))],
        [("M", (0, 3, 4, 2, 1))],
    ]


def test_forward_with_a_batch_per_candidate() -> None:
    cfgs = _cfgs(chunk_size=16)
    fused = fused_models(cfgs, [SEED] * len(cfgs))
    tokens = torch.randint(0, 11, (len(cfgs), 3, 12), generator=torch.Generator().manual_seed(2))
    out = fused(tokens)  # (K, B, T, V)
    for j, cfg in enumerate(cfgs):
        torch.testing.assert_close(out[j], _naive(cfg)(tokens[j]), atol=1e-5, rtol=1e-5)
    targets = tokens.roll(1, dims=-1)
    targets[1, :, :4] = IGNORE_INDEX  # candidates count their own scored tokens
    _, per = _fused_loss(out, targets)
    for j in range(len(cfgs)):
        want = F.cross_entropy(
            out[j].flatten(0, 1), targets[j].flatten(), ignore_index=IGNORE_INDEX
        )
        torch.testing.assert_close(per[j], want)


def test_mamba_longer_than_the_one_chunk_limit_takes_the_chunked_scan(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import primitives.fused as fused

    def not_here(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("ssd_one_chunk called past ONE_CHUNK_MAX_LEN")

    monkeypatch.setattr(fused, "ONE_CHUNK_MAX_LEN", 8)
    monkeypatch.setattr(fused, "ssd_one_chunk", not_here)
    cfgs = _cfgs(chunk_size=16)  # 12 tokens: one chunk, but longer than the limit
    tokens = torch.randint(0, 11, (3, 12), generator=torch.Generator().manual_seed(8))
    out = fused_models(cfgs, [SEED] * len(cfgs))(tokens)
    for j, cfg in enumerate(cfgs):
        torch.testing.assert_close(out[j], _naive(cfg)(tokens), atol=1e-5, rtol=1e-5)


def test_fused_rejects_mismatched_shapes() -> None:
    a = build_model(ModelConfig(layers=("M", "mA"), vocab_size=11, **SHAPE))
    b = build_model(ModelConfig(layers=("M",), vocab_size=11, **SHAPE))
    with pytest.raises(ValueError, match="depth"):
        FusedArrangements([a, b])


@pytest.mark.parametrize(
    ("chunk_size", "arrangements"), [(8, ARRANGEMENTS), (16, ARRANGEMENTS), (16, REGROUPED)]
)
def test_one_adamw_step_matches_naive_steps(
    chunk_size: int, arrangements: list[tuple[str, ...]]
) -> None:
    cfgs = _cfgs(chunk_size=chunk_size, arrangements=arrangements)
    fused = fused_models(cfgs, [SEED] * len(cfgs))
    gen = torch.Generator().manual_seed(1)
    tokens = torch.randint(0, 11, (4, 12), generator=gen)
    targets = torch.randint(0, 11, (4, 12), generator=gen)
    targets[:, :5] = IGNORE_INDEX
    opt = torch.optim.AdamW(fused.parameters(), lr=1e-2, weight_decay=0.1)
    for _ in range(2):
        loss, per = _fused_loss(fused(tokens), targets)
        opt.zero_grad()
        loss.backward()  # type: ignore[no-untyped-call]
        opt.step()
    for j, cfg in enumerate(cfgs):
        naive = _naive(cfg)
        nopt = torch.optim.AdamW(naive.parameters(), lr=1e-2, weight_decay=0.1)
        for _ in range(2):
            logits = naive(tokens)  # (B, T, V)
            nloss = F.cross_entropy(
                logits.flatten(0, 1), targets.flatten(), ignore_index=IGNORE_INDEX
            )
            nopt.zero_grad()
            nloss.backward()  # type: ignore[no-untyped-call]
            nopt.step()
        torch.testing.assert_close(per[j].detach(), nloss.detach(), atol=1e-5, rtol=1e-5)
        exported = build_model(cfg)
        fused.export(j, exported)
        for (name, p_naive), p_fused in zip(
            naive.named_parameters(), exported.parameters(), strict=True
        ):
            # AdamW's first steps move each weight by about lr = 1e-2 whatever the gradient's
            # size, so a wrong gradient shows as ~1e-2; 1e-4 leaves room for the rounding of
            # near-zero gradients (the fused Mamba conv sums in another order)
            torch.testing.assert_close(p_fused, p_naive, atol=1e-4, rtol=1e-4, msg=name)


def test_evaluate_fused_matches_evaluate() -> None:
    fid = dataclasses.replace(
        FIDELITIES["smoke"], name="tiny", epochs=3, n_train=64, n_test=32, eval_every=1
    )
    jobs = [  # seeds 1 and 2 fuse too: each candidate keeps its seed's data and batch order
        EvalJob(layers=layers, task=task, fidelity=fid, seed=seed, split="validation")
        for layers, task, seed in [
            (("mA", "M"), "mad", 1),
            (("Mb", "M"), "mad", 2),
            (("M", "mA"), "memorization", 1),
            (("M", "mA"), "memorization", 2),
        ]
    ]
    naive = evaluate(jobs)
    fused = evaluate_fused(jobs)
    assert {b.per_task["memorization"]["fused_k"] for b in fused} == {4.0}
    for a, b in zip(naive, fused, strict=True):
        assert a.status == b.status == "ok"
        assert a.job == b.job
        assert list(a.per_task) == list(b.per_task)
        for task, m in a.per_task.items():
            n = b.per_task[task]
            assert abs(m["macro_acc"] - n["macro_acc"]) < 0.02, task
            assert abs(m["final_loss"] - n["final_loss"]) < 1e-3 * max(1.0, m["final_loss"])
            assert m["n_steps"] == n["n_steps"] and m["n_params"] == n["n_params"]
        assert a.score is not None and b.score is not None
        assert abs(a.score - b.score) < 0.01
        assert a.n_params == b.n_params


def test_evaluate_fused_early_stop_matches_evaluate() -> None:
    fid = dataclasses.replace(
        FIDELITIES["smoke"],
        name="tiny-stop",
        epochs=4,
        n_train=64,
        n_test=32,
        eval_every=1,
        early_stop_acc=0.0,
    )
    jobs = [
        EvalJob(layers=layers, task="memorization", fidelity=fid, seed=0, split="test")
        for layers in [("mA", "M"), ("M", "Mb")]
    ]
    for a, b in zip(evaluate(jobs), evaluate_fused(jobs), strict=True):
        m, n = a.per_task["memorization"], b.per_task["memorization"]
        assert m["early_stopped"] == n["early_stopped"] == 1.0
        assert m["n_epochs"] == n["n_epochs"] == 1.0
        assert m["n_steps"] == n["n_steps"]
        assert abs(m["macro_acc"] - n["macro_acc"]) < 0.02


def test_a_group_out_of_memory_is_tried_again_in_halves(monkeypatch: pytest.MonkeyPatch) -> None:
    """Five jobs that fit at most two at a time end as if evaluated one by one."""
    import primitives.fused as fused

    real_fit = fused.fit_and_score_fused
    sizes: list[int] = []

    def small_card(model: FusedArrangements, *args: Any, **kwargs: Any) -> Any:
        sizes.append(model.k)
        if model.k > 2:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
        return real_fit(model, *args, **kwargs)

    monkeypatch.setattr(fused, "fit_and_score_fused", small_card)
    fid = dataclasses.replace(
        FIDELITIES["smoke"], name="tiny-oom", epochs=2, n_train=32, n_test=16
    )
    layers = [("mA", "M"), ("M", "Mb"), ("Mb", "mA"), ("M", "M"), ("mA", "mA")]
    jobs = [
        EvalJob(layers=a, task="memorization", fidelity=fid, seed=0, split="validation")
        for a in layers
    ]
    results = evaluate_fused(jobs)
    assert sizes == [5, 2, 3, 1, 2]  # 5 -> 2 + 3; 3 -> 1 + 2
    for naive, res in zip(evaluate(jobs), results, strict=True):
        assert res.job == naive.job and res.status == "ok", res.error
        assert res.score == pytest.approx(naive.score, abs=0.02)
    sizes.clear()

    def no_card(model: FusedArrangements, *args: Any, **kwargs: Any) -> Any:
        sizes.append(model.k)
        raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")

    monkeypatch.setattr(fused, "fit_and_score_fused", no_card)
    lost = evaluate_fused(jobs[:3])  # nothing fits: halves down to single jobs, then oom
    assert sizes == [3, 1, 2, 1, 1] and [r.status for r in lost] == ["oom"] * 3


# warnings torch.compile raises from its own internals (turned into errors by the suite)
COMPILE_WARNINGS = [
    "ignore:`torch.jit.script_method` is deprecated:DeprecationWarning",
    "ignore:The .grad attribute of a Tensor that is not a leaf:UserWarning",
    "ignore:TensorFloat32 tensor cores for float32 matrix multiplication:UserWarning",
    # dynamo (torch 2.11 to 2.13) instantiates the Function base class when it traces any
    # autograd.Function's apply, e.g. the attention block's layout products
    "ignore:<class 'torch.autograd.function.Function'> should not be instantiated"
    ":DeprecationWarning",
]


@pytest.mark.filterwarnings(*COMPILE_WARNINGS)
def test_layout_products_compile_in_one_graph_with_bmms_gradients() -> None:
    """The attention block's two autograd.Function products (used with the CUDA attention
    kernel) trace into one dynamo graph and give autograd's gradients of the plain products."""
    gen = torch.Generator().manual_seed(3)
    w_in = torch.randn(2, 6, 4, generator=gen, requires_grad=True)  # (K, C, D)
    w_out = torch.randn(2, 3, 6, generator=gen, requires_grad=True)  # (K, O, C)
    x = torch.randn(2, 5, 4, generator=gen, requires_grad=True)  # (K, N, D)

    def layout(w_in: torch.Tensor, w_out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        y = _layout_product(_ChannelsFirstProduct, w_in, x, x)  # (K, C, N)
        return _layout_product(_FromChannelsFirstProduct, y, w_out, x)  # (K, N, O)

    def plain(w_in: torch.Tensor, w_out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return torch.bmm(torch.bmm(x, w_in.transpose(1, 2)), w_out.transpose(1, 2))

    grads = []
    for fn in (torch.compile(layout, backend="aot_eager", fullgraph=True), plain):
        out = fn(w_in, w_out, x)
        grads.append(torch.autograd.grad(out.square().sum(), (w_in, w_out, x)))
        assert out.shape == (2, 5, 3)
    for got, want in zip(*grads, strict=True):
        torch.testing.assert_close(got, want)


def _assert_compiled_matches_eager(
    cfgs: list[ModelConfig], seeds: list[int], *, token_seed: int
) -> None:
    """Compiled and eager fused models of the same weights: same logits, same gradients."""
    tokens = torch.randint(0, 11, (3, 12), generator=torch.Generator().manual_seed(token_seed))
    eager = fused_models(cfgs, seeds)
    compiled = fused_models(cfgs, seeds).compile_blocks(True)
    with torch._dynamo.config.patch(suppress_errors=False):  # a compile failure fails the test
        out = compiled(tokens)
    ref = eager(tokens)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    out.square().mean().backward()
    ref.square().mean().backward()
    for (name, a), b in zip(compiled.named_parameters(), eager.parameters(), strict=True):
        torch.testing.assert_close(a.grad, b.grad, atol=1e-5, rtol=1e-4, msg=name)


def compiled_kernels_interpreter_check() -> None:
    """Run in a subprocess with TRITON_INTERPRET=1: compiled blocks through the SwiGLU, SSD and
    tiny attention kernels (their fake implementations, symbolic numbers of stacked candidates,
    the autograd formulas traced) give the eager model without them, logits and gradients."""
    import primitives.fused as fused

    layers = [("Mb", "M", "mA", "M"), ("M", "Mb", "M", "mA"), ("Mb", "M", "M", "M")]
    cfgs = [ModelConfig(layers=a, vocab_size=11, **SHAPE | {"chunk_size": 16}) for a in layers]
    tokens = torch.randint(0, 11, (3, 12), generator=torch.Generator().manual_seed(8))
    eager = fused_models(cfgs, [SEED] * len(cfgs))
    ref = eager(tokens)
    ref.square().mean().backward()
    fused.ssd_supported = lambda *args: True  # the interpreter runs CPU tensors
    fused.swiglu_supported = lambda *args: True
    fused.tiny_attention_supported = lambda *args: True
    compiled = fused_models(cfgs, [SEED] * len(cfgs)).compile_blocks(True)
    with torch._dynamo.config.patch(suppress_errors=False):  # a compile failure fails the check
        out = compiled(tokens)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    out.square().mean().backward()
    for (name, a), b in zip(compiled.named_parameters(), eager.parameters(), strict=True):
        torch.testing.assert_close(a.grad, b.grad, atol=1e-5, rtol=1e-4, msg=name)
    print(f"compiled, through the kernels: {len(layers)} mixed arrangements")


test_compiled_blocks_through_kernels_in_triton_interpreter = interpreter_test(
    "tests.primitives.test_fused", 1, check="compiled_kernels_interpreter_check", timeout_s=600
)


@pytest.mark.filterwarnings(*COMPILE_WARNINGS)
def test_compiled_blocks_match_eager_and_share_graphs_across_group_sizes() -> None:
    """torch.compile of the stacked blocks gives the eager results, and layers that stack
    2, 3, 4 and 5 candidates do not each compile their own graph."""
    from torch._dynamo.utils import counters

    layers = [("M",) * 4, ("M",) * 4, ("mA", "M", "M", "M"), ("mA", "mA", "M", "M")]
    layers.append(("mA", "mA", "mA", "M"))  # M stacks 2, 3, 4, 5 candidates; mA 3, 2, 1
    cfgs = [ModelConfig(layers=a, vocab_size=11, **SHAPE) for a in layers]
    before = counters["stats"]["unique_graphs"]
    _assert_compiled_matches_eager(cfgs, [SEED] * len(cfgs), token_seed=3)
    # M: one graph for 2, one with a symbolic size for 3-5; mA: 3, symbolic, and 1 (always
    # its own: size-1 dimensions are specialised); the final norm and head: 1. Static
    # parameter shapes would make 8.
    assert counters["stats"]["unique_graphs"] - before <= 6


@pytest.mark.filterwarnings(*COMPILE_WARNINGS)
def test_a_block_that_fails_to_compile_runs_eagerly(monkeypatch: pytest.MonkeyPatch) -> None:
    """A compiler failure costs speed, not the candidates: the block runs eagerly."""
    import primitives.fused as fused

    def broken_backend(gm: Any, example_inputs: Any) -> Any:
        raise RuntimeError("backend down")

    real_compile = torch.compile
    monkeypatch.setattr(fused, "_COMPILED_FNS", {})
    monkeypatch.setattr(torch, "compile", lambda fn: real_compile(fn, backend=broken_backend))
    cfgs = _cfgs(chunk_size=16)
    tokens = torch.randint(0, 11, (3, 12), generator=torch.Generator().manual_seed(6))
    ref = fused_models(cfgs, [SEED] * len(cfgs))(tokens)
    with torch._dynamo.config.patch(suppress_errors=False):  # compile_blocks turns it on
        out = fused_models(cfgs, [SEED] * len(cfgs)).compile_blocks(True)(tokens)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)


@pytest.mark.filterwarnings(*COMPILE_WARNINGS)
@pytest.mark.parametrize("chunk_size", [8, 16])
def test_compiled_mamba_matches_eager(chunk_size: int) -> None:
    """The compiled one-chunk Mamba2 block (16) and the compiled three-part path (8)."""
    cfgs = [ModelConfig(layers=("Mb", "M"), vocab_size=11, **SHAPE | {"chunk_size": chunk_size})]
    cfgs *= 2
    _assert_compiled_matches_eager(cfgs, [1, 2], token_seed=4)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.filterwarnings(*COMPILE_WARNINGS)
def test_compiled_mixed_arrangements_on_gpu() -> None:
    """On CUDA (the Triton attention kernel, the one-chunk Mamba2 block) a compiled fused model
    of mixed arrangements, whose layers stack 1 to 4 candidates, trains like the eager one."""
    layers = [("mA", "M", "Mb", "M"), ("Mb", "M", "mA", "M"), ("M", "mA", "Mb", "M")]
    layers += [("mA", "Mb", "Mb", "M"), ("mA", "M", "mA", "M")]
    shape = {"d_model": 128, "n_heads": 16, "d_state": 16, "headdim": 32, "chunk_size": 128}
    cfgs = [ModelConfig(layers=a, vocab_size=16, **shape) for a in layers]
    gen = torch.Generator().manual_seed(5)
    tokens = torch.randint(0, 16, (8, 127), generator=gen).cuda()
    targets = torch.randint(0, 16, (8, 127), generator=gen).cuda()
    runs = []
    for compiled in (False, True):
        model = fused_models(cfgs, [SEED] * len(cfgs)).cuda().compile_blocks(compiled)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
        losses = []
        for _ in range(3):
            with torch._dynamo.config.patch(suppress_errors=False):
                loss, per = _fused_loss(model(tokens), targets)
            opt.zero_grad()
            loss.backward()  # type: ignore[no-untyped-call]
            opt.step()
            losses.append(per.detach())
        runs.append(torch.stack(losses))  # (steps, K)
    torch.testing.assert_close(runs[1], runs[0], atol=1e-4, rtol=1e-3)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.filterwarnings(*COMPILE_WARNINGS)
def test_graphed_steps_train_like_eager_steps_on_gpu() -> None:
    """Steps replayed from CUDA graphs (compiled mixed arrangements, two batch shapes, the
    learning rate changed between steps) give the eager steps' losses and weights.

    In fp32: under bf16 autocast the two runs differed by up to 2.6e-4 in a loss of 2.8 (H200),
    too much to tell rounding from a graph that replays a stale batch or learning rate. In fp32
    the losses agreed to 1e-5 there, and of the weights one element of 10240 in one tensor
    differed, by 7.8e-6 (a weight of 0.046): AdamW divides a near-zero gradient's rounding by
    its small second moment. A stale learning rate would move every weight by about 1e-4, so
    the weights are held to a mean difference of 1e-7 and a largest of 5e-5. bf16 replays are
    checked end to end by the evaluator test below."""
    cfgs = [
        ModelConfig(
            layers=a,
            vocab_size=16,
            **{"d_model": 128, "n_heads": 16, "d_state": 16, "headdim": 32, "chunk_size": 128},
        )
        for a in REGROUPED
    ]
    gen = torch.Generator().manual_seed(6)
    data = [
        (
            torch.randint(0, 16, (b, 127), generator=gen),
            torch.randint(0, 16, (b, 127), generator=gen),
        )
        for b in (8, 8, 3, 8, 3, 8, 3, 8)  # each shape: 2 eager steps, then recorded, replayed
    ]
    runs = []
    for graphed in (False, True):
        model = fused_models(cfgs, [SEED] * len(cfgs)).cuda().compile_blocks(True)
        opt = capturable_adamw(
            model.parameters(), lr=1e-3, weight_decay=0.1, device=torch.device("cuda")
        )
        step = GraphedTrainStep(model, opt, bf16=False) if graphed else None
        losses = []
        for i, (tokens, targets) in enumerate(data):
            set_lr(opt, 1e-3 / (1 + i))
            tokens, targets = tokens.cuda(), targets.cuda()
            if step is None:
                per = fused_train_step(model, opt, tokens, targets, bf16=False)
            else:
                per = step(tokens, targets)
            losses.append(per.clone())
        assert step is None or len(step.graphs) == 2
        runs.append((torch.stack(losses), [p.detach().clone() for p in model.parameters()]))
    (eager_losses, eager_params), (graph_losses, graph_params) = runs
    torch.testing.assert_close(graph_losses, eager_losses, atol=1e-5, rtol=1e-5)
    pairs = zip(graph_params, eager_params, strict=True)
    diffs = torch.cat([(got - want).abs().flatten() for got, want in pairs])
    assert float(diffs.mean()) < 1e-7, float(diffs.mean())
    assert float(diffs.max()) < 5e-5, float(diffs.max())


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.filterwarnings(*COMPILE_WARNINGS)
def test_evaluate_fused_with_cuda_graphs_matches_without_on_gpu() -> None:
    fid = dataclasses.replace(
        FIDELITIES["smoke"], name="tiny", epochs=3, n_train=40, n_test=32, eval_every=1
    )
    jobs = [
        EvalJob(
            layers=a, task="memorization", fidelity=fid, seed=0, split="validation", device="cuda"
        )
        for a in (("mA", "M", "Mb", "M"), ("Mb", "M", "mA", "M"), ("M", "M", "M", "M"))
    ]
    plain = evaluate_fused(jobs, compile_blocks=True)
    graphed = evaluate_fused(jobs, compile_blocks=True, cuda_graph=True)
    assert [r.status for r in graphed] == ["ok"] * len(jobs)
    for a, b in zip(plain, graphed, strict=True):
        assert a.per_task["memorization"]["n_steps"] == b.per_task["memorization"]["n_steps"]
        assert abs(a.score - b.score) <= 1e-6
        assert a.per_task["memorization"]["final_loss"] == pytest.approx(
            b.per_task["memorization"]["final_loss"], rel=1e-5
        )


def test_set_lr_changes_float_and_tensor_learning_rates_in_place() -> None:
    p = torch.nn.Parameter(torch.ones(3))
    floats = torch.optim.AdamW([p], lr=1e-3)
    tensors = torch.optim.AdamW([p], lr=torch.tensor(1e-3), foreach=False)
    lr_tensor = tensors.param_groups[0]["lr"]
    set_lr(floats, 2e-4)
    set_lr(tensors, 2e-4)
    assert floats.param_groups[0]["lr"] == 2e-4
    assert tensors.param_groups[0]["lr"] is lr_tensor  # the same tensor: a graph reads it
    assert float(lr_tensor) == pytest.approx(2e-4)


def test_capturable_adamw_with_set_lr_trains_like_float_lr_adamw() -> None:
    """The optimiser a CUDA graph records (fused, capturable, lr a tensor changed in place) takes
    the steps of the plain AdamW whose float lr is set the same way (here on the CPU)."""
    cfgs = _cfgs(chunk_size=16, arrangements=REGROUPED)
    gen = torch.Generator().manual_seed(4)
    batches = [
        (
            torch.randint(0, 11, (b, 12), generator=gen),
            torch.randint(0, 11, (b, 12), generator=gen),
        )
        for b in (4, 4, 2)
    ]
    params = []
    for capturable in (False, True):
        model = fused_models(cfgs, [SEED] * len(cfgs))
        if capturable:
            opt = capturable_adamw(
                model.parameters(), lr=1e-2, weight_decay=0.1, device=torch.device("cpu")
            )
        else:
            opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.1)
        for i, (tokens, targets) in enumerate(batches):
            set_lr(opt, 1e-2 / (1 + i))
            fused_train_step(model, opt, tokens, targets, bf16=False)
        params.append([p.detach().clone() for p in model.parameters()])
    moved = fused_models(cfgs, [SEED] * len(cfgs)).parameters()
    assert any(not torch.equal(p, q) for p, q in zip(params[1], moved, strict=True))
    for got, want in zip(params[1], params[0], strict=True):
        torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-5)


def test_cuda_graph_flag_changes_nothing_off_cuda() -> None:
    fid = dataclasses.replace(
        FIDELITIES["smoke"], name="tiny", epochs=2, n_train=32, n_test=16, eval_every=1
    )
    jobs = [
        EvalJob(layers=a, task="memorization", fidelity=fid, seed=0, split="validation")
        for a in (("mA", "M"), ("M", "Mb"))
    ]
    plain, graphed = evaluate_fused(jobs), evaluate_fused(jobs, cuda_graph=True)
    assert [(r.status, r.score) for r in graphed] == [(r.status, r.score) for r in plain]


@pytest.mark.parametrize("chunk_size", [8, 16])
@pytest.mark.parametrize(("switch", "half"), [(None, True), ("1", True), ("0", False)])
def test_half_residual_switch_sets_the_stream_dtype_under_autocast(
    switch: str | None, half: bool, chunk_size: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """By default (or AIRA_HALF_RESIDUAL=1) every block reads and returns autocast's dtype
    (here CPU bf16); AIRA_HALF_RESIDUAL=0 keeps the stream fp32. Either way the logits agree
    with fp32 to bf16's precision and the gradients are finite. Both Mamba2 paths: the chunked
    scan in three parts (chunk 8) and the one-chunk block (16)."""
    if switch is None:
        monkeypatch.delenv("AIRA_HALF_RESIDUAL", raising=False)
    else:
        monkeypatch.setenv("AIRA_HALF_RESIDUAL", switch)
    cfgs = _cfgs(chunk_size=chunk_size)
    fused = fused_models(cfgs, [SEED] * len(cfgs))
    seen: list[tuple[torch.dtype, torch.dtype]] = []
    for mixer in fused.mixers:
        mixer.register_forward_hook(lambda _m, args, out: seen.append((args[0].dtype, out.dtype)))
    tokens = torch.randint(0, 11, (3, 12), generator=torch.Generator().manual_seed(0))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = fused(tokens)
    stream = torch.bfloat16 if half else torch.float32
    assert seen and all(pair == (stream, stream) for pair in seen), seen
    seen.clear()
    reference = fused(tokens)  # no autocast: fp32 throughout
    assert all(pair == (torch.float32, torch.float32) for pair in seen)
    torch.testing.assert_close(logits.float(), reference, atol=0.1, rtol=0.05)
    _fused_loss(logits, tokens.roll(1, dims=-1))[0].backward()
    assert all(p.grad is not None and bool(p.grad.isfinite().all()) for p in fused.parameters())


@pytest.mark.parametrize("max_vocab", [1024, 4])  # the one-hot product; the lookup (V = 11)
@pytest.mark.parametrize("per_candidate", [False, True])
def test_embedding_under_autocast_gives_the_lookups_rows_and_gradient(
    max_vocab: int, per_candidate: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the bf16 stream the embedding (a one-hot product up to ONE_HOT_MAX_VOCAB tokens, a
    lookup past it) returns each candidate's rows of its own table rounded to bf16, exactly,
    for shared and per-candidate tokens, and its table gradient is the scatter of the output
    gradient to bf16's precision."""
    import primitives.fused as fused_module

    monkeypatch.setattr(fused_module, "ONE_HOT_MAX_VOCAB", max_vocab)
    gen = torch.Generator().manual_seed(5)
    table = torch.randn(3, 11, 8, generator=gen).requires_grad_(True)
    shape = (3, 4, 6) if per_candidate else (4, 6)
    tokens = torch.randint(0, 11, shape, generator=gen)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        x = fused_module._embed(table, tokens)  # (K, B, T, D)
    each = tokens if per_candidate else tokens.expand(3, *tokens.shape)
    rows = torch.stack([table[j, each[j]] for j in range(3)])  # (K, B, T, D) fp32
    assert x.dtype == torch.bfloat16
    assert torch.equal(x, rows.to(torch.bfloat16))
    dx = torch.randn(x.shape, generator=gen).to(torch.bfloat16)
    (grad,) = torch.autograd.grad(x, table, dx)
    (expected,) = torch.autograd.grad(rows, table, dx.float())
    torch.testing.assert_close(grad, expected, atol=0.02, rtol=0.01)
