"""The fused accumulation of PerCoreClipOptimizer against the reference.

One process: a parameter's first gradient of the step becomes its sum (no copy), the
APCC reference core is kept as it is, bf16 gradients are summed in float32, parameters
appear in later cores, checkpoints written before the change still load.
DDP (2 gloo processes): the flat-buffer path, one all-reduce per step, every rank the
same update as the reference over all ranks' cores.
"""
import math

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from espnet_pcc.core.clip_config import ClipConfig
from espnet_pcc.core.clipping import clip_factor, clipped_average, grad_norm
from espnet_pcc.core.optimizers import PerCoreClipOptimizer
from shared_helpers import gloo_process_group

MODES = [("per_core", 0.5), ("adaptive_per_core", None), ("none", None), ("per_example", 1.0),
         ("global_of_cores", 0.5)]


class Net(torch.nn.Module):
    """`extra` is used only by the cores that ask for it; `unused` by none."""

    def __init__(self, seed=0):
        super().__init__()
        torch.manual_seed(seed)
        self.body = torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.Tanh(),
                                        torch.nn.Linear(5, 3))
        self.extra = torch.nn.Linear(6, 3)
        self.unused = torch.nn.Linear(2, 2)

    def forward(self, x, extra=False):
        y = self.body(x)
        return y + self.extra(x) if extra else y


def cores(n, seed=1, extra=()):
    """n cores (x, y, uses_extra), of different scales so that some are clipped."""
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(4, 6, generator=g) * (k + 1), torch.randn(4, 3, generator=g),
             k in extra) for k in range(n)]


def loss(model, core):
    x, y, extra = core
    x = x.to(next(model.parameters()).dtype)
    return ((model(x, extra).float() - y) ** 2).mean()


def wrap(model, mode, max_norm, optimizer=torch.optim.SGD, expected_cores=None, **clip_conf):
    config = ClipConfig.from_options(mode, {"max_norm": max_norm, **clip_conf})
    return PerCoreClipOptimizer(optimizer(model.parameters(), lr=0.1), clip_config=config,
                                noise_seed=3, expected_cores=expected_cores)


def reference(model, all_cores, mode, max_norm, dtype=None):
    params = list(model.parameters())
    grads = []
    for core in all_cores:
        g = torch.autograd.grad(loss(model, core), params, allow_unused=True)
        grads.append([torch.zeros_like(p, dtype=dtype) if x is None else x.to(dtype)
                      for x, p in zip(g, params)])
    return clipped_average(grads, mode, max_norm)


def streamed(model, opt, my_cores, loss_scale=1.0):
    for core in my_cores:
        (loss(model, core) * loss_scale).backward()
        opt.add_core(loss_scale=loss_scale)
    reduction = opt.reduce_cores()
    grads = [None if p.grad is None else p.grad / loss_scale for p in model.parameters()]
    return grads, reduction


def assert_matches(grads, expected, stats, reduction, rtol=1e-5, atol=1e-7):
    for g, e in zip(grads, expected):
        torch.testing.assert_close(torch.zeros_like(e) if g is None else g.to(e.dtype), e,
                                   rtol=rtol, atol=atol)
    assert reduction.num_cores == stats.core_norms.numel()
    assert reduction.norm_min == pytest.approx(stats.core_norms.min().item(), rel=rtol)
    assert reduction.norm_max == pytest.approx(stats.core_norms.max().item(), rel=rtol)
    assert reduction.norm_mean == pytest.approx(stats.core_norms.mean().item(), rel=rtol)
    assert reduction.clipped_fraction == pytest.approx(stats.clipped_fraction.item())


@pytest.mark.parametrize("mode,max_norm", MODES)
def test_parameters_first_used_by_a_later_core(mode, max_norm):
    model = Net()
    all_cores = cores(4, extra=(2, 3))
    expected, stats = reference(model, all_cores, mode, max_norm)
    grads, reduction = streamed(model, wrap(model, mode, max_norm), all_cores)
    assert_matches(grads, expected, stats, reduction)
    assert model.unused.weight.grad is None and model.extra.weight.grad is not None


@pytest.mark.parametrize("mode,max_norm", [("per_core", 1e9), ("adaptive_per_core", None),
                                           ("none", None)])
def test_one_core_is_its_own_gradient_without_a_copy(mode, max_norm):
    # Unclipped per_core, APCC and none with K = 1: the update is the gradient itself,
    # in the very tensor backward wrote (APCC: not even multiplied).
    model = Net()
    opt = wrap(model, mode, max_norm)
    loss(model, cores(1)[0]).backward()
    written = {name: (p.grad.data_ptr(), p.grad.clone()) for name, p in model.named_parameters()
               if p.grad is not None}
    opt.add_core()
    opt.reduce_cores()
    for name, p in model.named_parameters():
        if name in written:
            assert p.grad.data_ptr() == written[name][0], name
            assert torch.equal(p.grad, written[name][1]), name


def test_apcc_first_core_of_norm_zero():
    # r = ‖g_1‖ = 0: the bound is 0, so the update is 0 (not NaN).
    model = Net()
    opt = wrap(model, "adaptive_per_core", None)
    all_cores = cores(3)
    (loss(model, all_cores[0]) * 0.0).backward()
    opt.add_core()
    for core in all_cores[1:]:
        loss(model, core).backward()
        opt.add_core()
    reduction = opt.reduce_cores()
    assert reduction.bound == 0.0 and reduction.nonfinite_cores == 0
    assert all(torch.equal(p.grad, torch.zeros_like(p)) for p in model.parameters()
               if p.grad is not None)


def test_apcc_later_core_of_norm_zero():
    # r = ‖g_1‖ > 4, then a zero core: r/‖g_2‖ overflows, and 0·inf must not make the
    # step NaN; the reference update is 0 (C = min_k ‖g_k‖ = 0).
    model = Net()
    opt = wrap(model, "adaptive_per_core", None)
    first, zero, last = cores(3)
    (loss(model, first) * 100.0).backward()
    opt.add_core()
    (loss(model, zero) * 0.0).backward()
    opt.add_core()
    loss(model, last).backward()
    opt.add_core()
    reduction = opt.reduce_cores()
    assert reduction.norm_max > 4
    assert reduction.bound == 0.0 and reduction.nonfinite_cores == 0
    assert all(torch.equal(p.grad, torch.zeros_like(p)) for p in model.parameters()
               if p.grad is not None)


@pytest.mark.parametrize("mode,max_norm", [("per_core", 0.5), ("adaptive_per_core", None)])
def test_bf16_gradients_are_summed_in_float32(mode, max_norm):
    model = Net().to(torch.bfloat16)
    all_cores = cores(4)
    expected, stats = reference(model, all_cores, mode, max_norm, dtype=torch.float32)
    grads, reduction = streamed(model, wrap(model, mode, max_norm), all_cores)
    assert all(g is None or g.dtype == torch.bfloat16 for g in grads)
    # Norms are bf16 norms (grad_norm), and the update is rounded to bf16 once, at the end.
    assert_matches(grads, expected, stats, reduction, rtol=1e-2, atol=1e-4)


def test_nonfinite_first_core_poisons_an_apcc_step():
    model = Net()
    opt = wrap(model, "adaptive_per_core", None)
    a, b = cores(2)
    (loss(model, a) * math.inf).backward()
    opt.add_core()
    loss(model, b).backward()
    opt.add_core()
    assert opt.reduce_cores().nonfinite_cores == 1
    assert model.body[0].weight.grad is not None
    assert all(torch.isnan(p.grad).all() for p in model.parameters() if p.grad is not None)


@pytest.mark.parametrize("mode,max_norm", [("per_core", 0.5), ("adaptive_per_core", None)])
def test_pending_cores_of_a_flat_buffer_checkpoint_load(mode, max_norm):
    # Then: one flat buffer Σ_k f_k·g_k (APCC: g_k/‖g_k‖) with a 4-float tail, the core
    # norms and the indices of the parameters some core had a gradient for.
    all_cores = cores(3, extra=(1,))
    expected, _ = reference(Net(), all_cores, mode, max_norm)
    model = Net()
    params = list(model.parameters())
    buffer, norms, has_grad = torch.zeros(sum(p.numel() for p in params) + 4), [], set()
    for core in all_cores[:2]:
        g = torch.autograd.grad(loss(model, core), params, allow_unused=True)
        norm = grad_norm([x for x in g if x is not None])
        factor = 1 / norm if mode == "adaptive_per_core" else clip_factor(norm, max_norm)
        buffer[:-4] += torch.cat([(torch.zeros_like(p) if x is None else x * factor).reshape(-1)
                                  for x, p in zip(g, params)])
        norms.append(norm)
        has_grad |= {i for i, x in enumerate(g) if x is not None}
    opt = wrap(model, mode, max_norm)
    state = opt.state_dict()
    state["pcc"]["pending"] = {"buffer": buffer, "core_norms": torch.stack(norms),
                               "has_grad": sorted(has_grad)}
    opt.load_state_dict(state)
    assert opt.num_pending_cores == 2
    grads, _ = streamed(model, opt, all_cores[2:])
    for g, e in zip(grads, expected):
        torch.testing.assert_close(torch.zeros_like(e) if g is None else g, e)


def test_pending_state_does_not_alias_the_loaded_checkpoint():
    all_cores = cores(3)
    model = Net()
    opt = wrap(model, "per_core", 0.5)
    streamed_cores = all_cores[:2]
    for core in streamed_cores:
        loss(model, core).backward()
        opt.add_core()
    state = opt.state_dict()
    kept = [None if s is None else s.clone() for s in state["pcc"]["pending"]["sums"]]
    opt2 = wrap(model, "per_core", 0.5)
    opt2.load_state_dict(state)
    streamed(model, opt2, all_cores[2:])
    for before, after in zip(kept, state["pcc"]["pending"]["sums"]):
        assert (before is None and after is None) or torch.equal(before, after)


@pytest.mark.parametrize("mode,max_norm", MODES)
def test_steps_of_changing_size(mode, max_norm):
    # Cores are added divided by the last step's K: exact whether K changes or not.
    model = Net()
    opt = wrap(model, mode, max_norm)
    for k, n in enumerate((4, 3, 3, 1, 2)):
        step_cores = cores(n, seed=10 + k, extra=(1,))
        expected, stats = reference(model, step_cores, mode, max_norm)
        grads, reduction = streamed(model, opt, step_cores)
        assert_matches(grads, expected, stats, reduction)
        opt.zero_grad()


@pytest.mark.parametrize("mode,max_norm", [("per_core", 0.5), ("adaptive_per_core", None)])
def test_pending_cores_keep_the_divisor_of_their_step(mode, max_norm):
    model = Net()
    opt = wrap(model, mode, max_norm)
    streamed(model, opt, cores(2, seed=5))  # K = 2: this step divides by 2
    opt.zero_grad()
    step_cores = cores(3, extra=(2,))
    for core in step_cores[:2]:
        loss(model, core).backward()
        opt.add_core()
    opt2 = wrap(model, mode, max_norm)
    opt2.load_state_dict(opt.state_dict())
    expected, stats = reference(model, step_cores, mode, max_norm)
    grads, reduction = streamed(model, opt2, step_cores[2:])
    assert_matches(grads, expected, stats, reduction)


# -- DDP: 2 gloo ranks ------------------------------------------------------------
# Rank 0 holds cores 0-1, rank 1 cores 2-4 (per_example: ranks hold different numbers);
# `extra` only in rank 1's cores, so rank 0 must still step it.
RANK_CORES = {0: [0, 1], 1: [2, 3, 4]}
EXTRA = (3,)
DDP_CASES = MODES + [("per_core", 0.5, 1024.0), ("adaptive_per_core", None, 1024.0)]
# The order of the worker's results after the DDP_CASES (two steps each).
NOISE, PENDING, NONFINITE, ONE_PROCESS_CHECKPOINT, RESUME_AFTER_STEP, APCC_ZERO_CORE, POISSON = (
    2 * len(DDP_CASES) + k for k in (0, 2, 4, 5, 6, 8, 9))
# The resume after a step: pending cores 0 (rank 0) and 1 (rank 1), then 2 and 3.
RESUME_CORES = cores(4, seed=9, extra=(3,))


def _ddp_worker(rank, world_size, init_file, out, checkpoint):
    with gloo_process_group(rank, world_size, init_file):
        _ddp_cases(rank, out, checkpoint)


def _ddp_cases(rank, out, checkpoint):
    calls = []
    all_reduce = dist.all_reduce
    dist.all_reduce = lambda *a, **k: calls.append(a[0].numel()) or all_reduce(*a, **k)
    try:
        results = []
        all_cores = cores(5, extra=EXTRA)
        for mode, max_norm, *scale in DDP_CASES:
            model = Net()
            opt = wrap(model, mode, max_norm, optimizer=torch.optim.Adam)
            for step in range(2):  # the second step reuses the buffer
                calls.clear()
                mine = [all_cores[k] for k in RANK_CORES[rank]]
                grads, reduction = streamed(model, opt, mine, *scale)
                results.append((grads, reduction, list(calls)))
                opt.step()
                opt.zero_grad()
                model.load_state_dict(Net().state_dict())  # the reference's weights
        # Noise: added once for the step (by rank 0), the values 1 process draws.
        model = Net()
        opt = wrap(model, "per_core", 0.5, noise_multiplier=0.7)
        for step in range(2):  # the second step draws new noise
            calls.clear()
            grads, reduction = streamed(model, opt, [all_cores[k] for k in RANK_CORES[rank]])
            results.append((grads, reduction, list(calls)))
            opt.zero_grad()
        # An epoch ends inside an accum_grad cycle: rank 0 takes every rank's pending cores,
        # writes the checkpoint alone; training on, or resuming on both ranks, gives the
        # update of all 5 cores (rank 1's are neither lost nor counted twice).
        for resume in (False, True):
            model = Net()
            opt = wrap(model, "per_core", 0.5)
            for core in [all_cores[k] for k in RANK_CORES[rank]]:
                loss(model, core).backward()
                opt.add_core()
            opt.gather_pending()
            assert opt.num_pending_cores == (5 if rank == 0 else 0)
            if resume:
                if rank == 0:
                    torch.save(opt.state_dict(), f"{out}.pending")
                dist.barrier()
                model = Net()
                opt = wrap(model, "per_core", 0.5)
                opt.load_state_dict(torch.load(f"{out}.pending", weights_only=False))
            calls.clear()
            reduction = opt.reduce_cores()
            results.append(([p.grad for p in model.parameters()], reduction, list(calls)))
        # A non-finite core on rank 1 poisons both ranks.
        model = Net()
        opt = wrap(model, "per_core", 0.5)
        mine = [all_cores[k] for k in RANK_CORES[rank]]
        for k, core in enumerate(mine):
            (loss(model, core) * (math.inf if rank == 1 and k == 0 else 1.0)).backward()
            opt.add_core()
        reduction = opt.reduce_cores()
        results.append(([p.grad for p in model.parameters()], reduction, None))
        # Rank 0 resumes its cores from a one-process APCC checkpoint (there r = ‖g_1‖,
        # under DDP r = 1) and reduces without adding any.
        model = Net()
        opt = wrap(model, "adaptive_per_core", None)
        if rank == 0:
            opt.load_state_dict(torch.load(checkpoint, weights_only=False))
            reduction = opt.reduce_cores()
            results.append(([p.grad for p in model.parameters()], reduction, None))
        else:
            results.append(streamed(model, opt, [all_cores[k] for k in RANK_CORES[rank]])
                           + (None,))
        # A resume after a step of 5 cores (K̂ = 5): one pending core per rank, gathered,
        # saved, loaded on both ranks, then one more core each.  Every rank must divide by
        # the checkpoint's K̂, not rank 0 alone.
        for mode, max_norm in (("per_core", 0.5), ("adaptive_per_core", None)):
            model = Net()
            opt = wrap(model, mode, max_norm)
            streamed(model, opt, [all_cores[k] for k in RANK_CORES[rank]])
            opt.zero_grad()
            loss(model, RESUME_CORES[rank]).backward()
            opt.add_core()
            opt.gather_pending()
            if rank == 0:
                torch.save(opt.state_dict(), f"{out}.after_step")
            dist.barrier()
            opt = wrap(model, mode, max_norm)
            opt.load_state_dict(torch.load(f"{out}.after_step", weights_only=False))
            dist.barrier()  # rank 0 overwrites the file for the next mode
            results.append(streamed(model, opt, [RESUME_CORES[2 + rank]]) + (None,))
        # APCC with a zero core on rank 1 after a large one on rank 0: the update is 0.
        model = Net()
        opt = wrap(model, "adaptive_per_core", None)
        (loss(model, all_cores[4]) * (100.0 if rank == 0 else 0.0)).backward()
        opt.add_core()
        results.append(([p.grad for p in model.parameters()], opt.reduce_cores(), None))
        # Poisson steps: the fixed denominator D = 8, rank 1 drew no core in the first step,
        # no rank any core in the second (the noise alone, on every parameter).
        model = Net()
        opt = wrap(model, "per_core", 0.5, expected_cores=8, noise_multiplier=0.7)
        for step_cores in ([all_cores[:3], []], [[], []]):
            results.append(streamed(model, opt, step_cores[rank]) + (None,))
            opt.zero_grad()
        torch.save(results, f"{out}.{rank}")
    finally:
        dist.all_reduce = all_reduce


@pytest.fixture(scope="module")
def ddp_results(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ddp_fused")
    model = Net()  # rank 0's cores in one process, pending in a checkpoint
    opt = wrap(model, "adaptive_per_core", None)
    for core in [cores(5, extra=EXTRA)[k] for k in RANK_CORES[0]]:
        loss(model, core).backward()
        opt.add_core()
    torch.save(opt.state_dict(), tmp / "checkpoint")
    mp.spawn(_ddp_worker, args=(2, str(tmp / "init"), str(tmp / "out"), str(tmp / "checkpoint")),
             nprocs=2, join=True)
    return [torch.load(f"{tmp / 'out'}.{rank}", weights_only=False) for rank in (0, 1)]


@pytest.mark.parametrize("case", range(len(DDP_CASES)))
def test_ddp_one_all_reduce_and_the_reference_update(ddp_results, case):
    mode, max_norm, *_ = DDP_CASES[case]
    expected, stats = reference(Net(), cores(5, extra=EXTRA), mode, max_norm)
    for rank in (0, 1):
        for step in range(2):
            grads, reduction, calls = ddp_results[rank][2 * case + step]
            assert len(calls) == 1, calls  # one collective per step
            assert_matches(grads, expected, stats, reduction)
            assert grads[-1] is None and grads[-2] is None  # `unused` on every rank


def test_ddp_noise_is_added_once_and_equals_one_process(ddp_results):
    model = Net()
    opt = wrap(model, "per_core", 0.5, noise_multiplier=0.7)
    clean, _ = reference(Net(), cores(5, extra=EXTRA), "per_core", 0.5)
    for step in range(2):
        expected, one_process = streamed(model, opt, cores(5, extra=EXTRA))
        opt.zero_grad()
        for rank in (0, 1):
            grads, reduction, calls = ddp_results[rank][NOISE + step]
            assert len(calls) == 1, calls
            assert reduction.noise_std == pytest.approx(0.7 * 0.5 / 5)
            for g, e, c in zip(grads, expected, clean):
                if e is None:
                    assert g is None
                    continue
                torch.testing.assert_close(g, e, rtol=1e-5, atol=1e-7)
                # Once, not once per rank: twice the noise would be twice as far from clean.
                assert not torch.allclose(g, c, atol=1e-3)


@pytest.mark.parametrize("resumed", [False, True])
def test_ddp_pending_cores_gathered_on_rank0_continue_or_resume_exactly(ddp_results, resumed):
    expected, stats = reference(Net(), cores(5, extra=EXTRA), "per_core", 0.5)
    for rank in (0, 1):
        grads, reduction, calls = ddp_results[rank][PENDING + int(resumed)]
        assert len(calls) == 1, calls
        assert_matches(grads, expected, stats, reduction)


def test_ddp_nonfinite_core_on_one_rank_skips_on_both(ddp_results):
    for rank in (0, 1):
        grads, reduction, _ = ddp_results[rank][NONFINITE]
        assert reduction.nonfinite_cores == 1 and reduction.num_cores == 5
        assert grads[0] is not None
        assert all(torch.isnan(g).all() for g in grads if g is not None)


def test_ddp_resumes_pending_cores_of_a_one_process_checkpoint(ddp_results):
    expected, stats = reference(Net(), cores(5, extra=EXTRA), "adaptive_per_core", None)
    for rank in (0, 1):
        grads, reduction, _ = ddp_results[rank][ONE_PROCESS_CHECKPOINT]
        assert_matches(grads, expected, stats, reduction)


@pytest.mark.parametrize("case,mode,max_norm", [(0, "per_core", 0.5),
                                                (1, "adaptive_per_core", None)])
def test_ddp_resume_after_a_step_divides_by_the_checkpoints_core_count(ddp_results, case, mode,
                                                                         max_norm):
    expected, stats = reference(Net(), RESUME_CORES, mode, max_norm)
    for rank in (0, 1):
        grads, reduction, _ = ddp_results[rank][RESUME_AFTER_STEP + case]
        assert_matches(grads, expected, stats, reduction)


def test_ddp_apcc_zero_core_gives_a_zero_update(ddp_results):
    for rank in (0, 1):
        grads, reduction, _ = ddp_results[rank][APCC_ZERO_CORE]
        assert reduction.bound == 0.0 and reduction.nonfinite_cores == 0
        assert reduction.norm_max > 4
        assert all(torch.equal(g, torch.zeros_like(g)) for g in grads if g is not None)


def test_ddp_poisson_steps_equal_one_process_even_when_empty(ddp_results):
    """The fixed denominator and the noise of an empty step are those of one process: every
    parameter (`unused` too) carries σC/D times the step's draw."""
    model = Net()
    opt = wrap(model, "per_core", 0.5, expected_cores=8, noise_multiplier=0.7)
    for step, step_cores in enumerate((cores(5, extra=EXTRA)[:3], [])):
        expected, one_process = streamed(model, opt, step_cores)
        opt.zero_grad()
        assert one_process.num_cores == len(step_cores)
        assert one_process.noise_std == pytest.approx(0.7 * 0.5 / 8)
        assert all(e is not None for e in expected)
        for rank in (0, 1):
            grads, reduction, _ = ddp_results[rank][POISSON + step]
            assert reduction.num_cores == len(step_cores)
            for g, e in zip(grads, expected):
                torch.testing.assert_close(g, e, rtol=1e-5, atol=1e-7)
