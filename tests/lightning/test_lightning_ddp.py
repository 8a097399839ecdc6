"""PerCoreDDPStrategy under Lightning's DDP with 2 gloo processes on CPU: every step's update
is `clipped_average` over the cores of both ranks (rank × accumulation micro-batch × split),
the ranks agree, BatchNorm's buffers stay equal, the telemetry is the step's over both ranks,
a mid-cycle checkpoint holds both ranks' pending cores, and micro-batches cut into different
numbers of cores on the two ranks stop both in one line.  Every case runs in one pair of
processes (start-up dominates)."""
import os

import pytest
import torch
import torch.multiprocessing as mp
from lightning.pytorch.callbacks import Callback

from lightning.pytorch.strategies import DDPStrategy

from espnet_pcc.core.clip_config import ClipConfigError
from espnet_pcc.core.ddp_sums import statistics_length
from espnet_pcc.lightning import PerCoreDDPStrategy
from espnet_pcc.lightning.strategy import lightning_clip_config
from lightning_helpers import RecordingLogger, TinyRegression, expected_report, make_batches, \
    plan_steps, reference_sgd, trainer
from shared_helpers import gloo_process_group

LR = 0.5
C = 2.0
WORLD = 2
NUM_BATCHES = 5  # per rank, accumulate_grad_batches 2: steps of 2, 2 and 1 micro-batches

CASES = [
    ("per_core", {"max_norm": C, "num_cores": 2}),
    ("adaptive_per_core", {"num_cores": 2}),
    ("per_example", {"max_norm": C}),
    ("none", {"num_cores": 2}),
    ("global", {}),  # Lightning's own DDP loop, clipped by gradient_clip_val
]
CHECKPOINT_CASE = 0  # also writes a checkpoint inside a cycle
BATCH_NORM_CASE = len(CASES)  # per_core on a module with BatchNorm
COMMUNICATION = "communication"  # stock DDP and per_core, their collectives profiled
CORE_COUNTS = "core_counts"  # per_example on micro-batches of 4 items on rank 0, 3 on rank 1


def _rank_batches(rank, num_batches=NUM_BATCHES):
    return make_batches(num_batches, 4, seed=10 + rank)


class _SaveMidCycle(Callback):
    def __init__(self, path):
        self.path = path

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if batch_idx == 2:  # the first micro-batch of the second cycle
            trainer.save_checkpoint(self.path)


def _train(rank, clip, clip_conf, out, batch_norm=False, callbacks=()):
    num_batches = 4 if clip == "global" else NUM_BATCHES  # stock: full cycles only
    module = TinyRegression(_rank_batches(rank, num_batches), seed=rank, lr=LR,
                            batch_norm=batch_norm)
    logger = RecordingLogger()
    strategy = PerCoreDDPStrategy(clip=clip, clip_conf=clip_conf)
    trainer(strategy, epochs=2, devices=WORLD, logger=logger, use_distributed_sampler=False,
            gradient_clip_val=C if clip == "global" else None,
            callbacks=list(callbacks)).fit(module)
    keys = {k for _, row in logger.rows for k in row}
    torch.save({"params": [p.detach() for p in module.parameters()],
                "buffers": [b.detach() for b in module.buffers()],
                "logged": {k: logger.values(k) for k in keys}}, f"{out}.{rank}")


def _collectives(strategy, rank):
    """The gloo collectives of one epoch (4 micro-batches, accumulation 2: 2 steps), as
    (name, number of elements) in order, from torch's profiler."""
    module = TinyRegression(_rank_batches(rank, 4), seed=0, lr=LR)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU],
                                record_shapes=True) as profile:
        trainer(strategy, epochs=1, devices=WORLD, use_distributed_sampler=False).fit(module)
    return [(event.name, sum(torch.Size(s).numel() for s in event.input_shapes if s))
            for event in profile.events() if event.name.startswith("gloo:")]


def _worker(rank, world_size, init_file, out):
    # Lightning takes the processes as launched from outside (as under torchrun) and the
    # process group as already initialised.
    os.environ["LOCAL_RANK"] = str(rank)
    with gloo_process_group(rank, world_size, init_file):
        for case, (clip, clip_conf) in enumerate(CASES):
            callbacks = [_SaveMidCycle(f"{out}.mid.ckpt")] if case == CHECKPOINT_CASE else []
            _train(rank, clip, clip_conf, f"{out}.{case}", callbacks=callbacks)
        _train(rank, "per_core", {"max_norm": C, "num_cores": 2}, f"{out}.{BATCH_NORM_CASE}",
               batch_norm=True)
        collectives = {
            "stock": _collectives(DDPStrategy(), rank),
            "per_core": _collectives(PerCoreDDPStrategy(
                clip="per_core", clip_conf={"max_norm": C, "num_cores": 2}), rank)}
        torch.save(collectives, f"{out}.{COMMUNICATION}.{rank}")
        torch.save(_unequal_core_counts(rank), f"{out}.{CORE_COUNTS}.{rank}")


def _unequal_core_counts(rank):
    """per_example with 4 items a micro-batch on rank 0 and 3 on rank 1: the error each
    rank stops with (None: it trained).  Last in the worker: the module here runs no
    collectives in training_step, so without the check it trains, and ESPnet3's would hang."""
    module = TinyRegression(make_batches(2, 4 - rank, seed=10 + rank), seed=0, lr=LR)
    try:
        trainer(PerCoreDDPStrategy(clip="per_example", clip_conf={"max_norm": C}), epochs=1,
                devices=WORLD, use_distributed_sampler=False).fit(module)
    except ClipConfigError as e:
        return str(e)
    return None


@pytest.fixture(scope="module")
def ddp_results(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("lightning_ddp")
    mp.spawn(_worker, args=(WORLD, str(tmp / "init"), str(tmp / "result")), nprocs=WORLD,
             join=True)
    return str(tmp / "result")


def _reference(clip, clip_conf, batch_norm=False):
    num_batches = 4 if clip == "global" else NUM_BATCHES
    config = None if clip == "global" else lightning_clip_config(clip, clip_conf)
    steps = plan_steps([_rank_batches(r, num_batches) for r in range(WORLD)], 2, 2, config)
    module = TinyRegression([], seed=0, batch_norm=batch_norm)  # rank 0's initial weights
    stats = reference_sgd(module, steps, clip, C if clip in ("global", "per_core",
                                                              "per_example") else None, LR)
    return module, stats


@pytest.mark.parametrize("case", range(len(CASES)))
def test_ddp_update_is_clipped_average_over_both_ranks(ddp_results, case):
    clip, clip_conf = CASES[case]
    rank0 = torch.load(f"{ddp_results}.{case}.0")
    rank1 = torch.load(f"{ddp_results}.{case}.1")
    module, stats = _reference(clip, clip_conf)
    for p, q0, q1 in zip(module.parameters(), rank0["params"], rank1["params"]):
        torch.testing.assert_close(q0, q1, rtol=0, atol=0)  # the ranks agree
        torch.testing.assert_close(q0, p.detach(), rtol=1e-5, atol=1e-6)
    if clip == "global":
        return
    for key in expected_report(stats[0]):
        assert rank0["logged"][key] == pytest.approx(
            [expected_report(s)[key] for s in stats], rel=1e-5), key


def test_ddp_buffers_stay_equal_across_ranks(ddp_results):
    rank0 = torch.load(f"{ddp_results}.{BATCH_NORM_CASE}.0")
    rank1 = torch.load(f"{ddp_results}.{BATCH_NORM_CASE}.1")
    module, _ = _reference("per_core", {"max_norm": C, "num_cores": 2}, batch_norm=True)
    for b0, b1 in zip(rank0["buffers"], rank1["buffers"]):
        torch.testing.assert_close(b0, b1, rtol=0, atol=0)
    # BatchNorm over 2-item cores amplifies the rounding of the streamed sums.
    for p, q0 in zip(module.parameters(), rank0["params"]):
        torch.testing.assert_close(q0, p.detach(), rtol=1e-4, atol=1e-5)


def test_ddp_mid_cycle_checkpoint_holds_both_ranks_pending_cores(ddp_results):
    """Written after the first micro-batch of a cycle: its 2 cores on each of the 2 ranks, all
    on rank 0 (which writes the checkpoint); training went on unchanged (the parameters of
    CHECKPOINT_CASE match the reference above)."""
    checkpoint = torch.load(f"{ddp_results}.mid.ckpt", weights_only=False)
    pending = checkpoint["optimizer_states"][0]["pcc"]["pending"]
    assert pending["core_norms"].numel() == 2 * WORLD


def test_ddp_communicates_once_per_step_and_checks_core_counts(ddp_results):
    """Stock Lightning DDP all-reduces the gradients once per step (no_sync while it
    accumulates); per_core all-reduces once per step too, the clipped sum with the step's
    statistics in its tail.  With num_cores 2 a rank's micro-batch could have fewer cores
    than another's, so per_core adds one all-reduce of 2 integers per micro-batch (the core
    counts' check), and no other collective."""
    collectives = torch.load(f"{ddp_results}.{COMMUNICATION}.0")
    stock, per_core = collectives["stock"], collectives["per_core"]
    num_params, steps, micro_batches = 4, 2, 4
    numel = sum(p.numel() for p in TinyRegression([]).parameters())

    def all_reduces(events, size=None):
        return [n for name, n in events if name == "gloo:all_reduce"
                and (n == size if size is not None else n > 2)]

    assert all_reduces(stock) == [numel] * steps and not all_reduces(stock, 2)
    assert all_reduces(per_core) == [numel + statistics_length(WORLD) + num_params] * steps
    assert all_reduces(per_core, 2) == [2] * micro_batches
    assert len(per_core) <= len(stock) + micro_batches


def test_ddp_micro_batches_cut_into_different_core_counts_stop_both_ranks(ddp_results):
    """Every rank raises the same one-line error at the first micro-batch (4 cores on rank
    0, 3 on rank 1) instead of running training_step unequally often."""
    errors = [torch.load(f"{ddp_results}.{CORE_COUNTS}.{rank}") for rank in range(WORLD)]
    assert errors[0] == errors[1] == (
        "clip: per_example: the ranks cut one micro-batch into 3 to 4 cores "
        "(clip_conf.num_cores=1); each core is one call of the module's training_step, whose "
        "collectives (ESPnet3's) need every rank to call it as often: give every rank "
        "micro-batches of at least num_cores items (per_example: micro-batches of one size)")
