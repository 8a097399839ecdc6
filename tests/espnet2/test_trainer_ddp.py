"""Real torch.distributed (2 gloo processes on CPU): DDP 2 ranks × 2 cores
gives the same parameters as 1 process × 4 cores on the same data."""
import pytest
import torch
import torch.multiprocessing as mp

from espnet_pcc.espnet2.trainer import PCCTrainer
from shared_helpers import gloo_process_group
from trainer_helpers import TinyASRLike, make_batches, run_epoch, shard, trainer_options, \
    wrapped_sgd

BATCH = 8  # global batch: 4 utterances per rank


CASES = [
    ("per_core", {"max_norm": 0.3, "num_cores": 2}, 1),
    ("adaptive_per_core", {"num_cores": 2}, 1),
    ("per_core", {"max_norm": 0.3, "num_cores": 1}, 2),  # cores from accum_grad
    ("global_of_cores", {"max_norm": 0.3, "num_cores": 2}, 1),  # the average clipped
]


def _worker(rank, world_size, init_file, out):
    with gloo_process_group(rank, world_size, init_file):
        for case, (clip, clip_conf, accum_grad) in enumerate(CASES):
            _train(rank, world_size, clip, clip_conf, accum_grad, f"{out}.{case}")
        _train_batch_norm(rank, f"{out}.bn")


def _train_batch_norm(rank, out):
    """BatchNorm under DDP, each rank on its own data, 3 batches with accum_grad 2: the epoch
    ends inside a cycle, after forwards that no step followed."""
    model = TinyASRLike(seed=0, batch_norm=True)
    ddp = torch.nn.parallel.DistributedDataParallel(model)
    mine = make_batches(3, 4, seed=10 + rank)
    run_epoch(PCCTrainer, model, wrapped_sgd(model, "per_core", 0.3), mine,
              trainer_options("per_core", {"max_norm": 0.3, "num_cores": 2}, accum_grad=2),
              distributed=True, model_for_ddp=ddp)
    torch.save({name: b.clone() for name, b in model.named_buffers()}, f"{out}.{rank}")


def _train(rank, world_size, clip, clip_conf, accum_grad, out):
    model = TinyASRLike(seed=rank)  # DDP broadcasts rank 0's initial weights
    ddp = torch.nn.parallel.DistributedDataParallel(model)
    half = BATCH // world_size
    mine = [shard(b, rank * half, (rank + 1) * half) for b in make_batches(4, BATCH)]
    if accum_grad > 1:  # the rank's share as accum_grad consecutive micro-batches
        step = half // accum_grad
        mine = [shard(b, s, s + step) for b in mine for s in range(0, half, step)]
    stats = run_epoch(PCCTrainer, model, wrapped_sgd(model, clip, clip_conf.get("max_norm")),
                      mine, trainer_options(clip, clip_conf, accum_grad=accum_grad),
                      distributed=True, model_for_ddp=ddp)
    torch.save({"params": [p.detach() for p in model.parameters()],
                "stats": {k: float(v) for k, v in stats.items()}}, f"{out}.{rank}")


@pytest.fixture(scope="module")
def ddp_results(tmp_path_factory):
    """Runs every case in one pair of gloo processes (start-up dominates)."""
    tmp = tmp_path_factory.mktemp("ddp")
    mp.spawn(_worker, args=(2, str(tmp / "init"), str(tmp / "result")), nprocs=2, join=True)
    return str(tmp / "result")


@pytest.mark.parametrize("case", range(len(CASES)))
def test_ddp_two_ranks_equal_one_process(ddp_results, case):
    clip, clip_conf, accum_grad = CASES[case]
    out = f"{ddp_results}.{case}"
    rank0, rank1 = torch.load(f"{out}.0"), torch.load(f"{out}.1")

    single = TinyASRLike(seed=0)
    conf = dict(clip_conf, num_cores=4)
    stats = run_epoch(PCCTrainer, single, wrapped_sgd(single, clip, conf.get("max_norm")),
                      make_batches(4, BATCH), trainer_options(clip, conf))
    for p, q0, q1 in zip(single.parameters(), rank0["params"], rank1["params"]):
        torch.testing.assert_close(q0, q1)  # ranks agree
        torch.testing.assert_close(q0, p.detach(), rtol=1e-5, atol=1e-6)
    for key in ("num_cores", "clip_bound", "core_norm_min", "core_norm_max", "clip"):
        assert rank0["stats"][key] == pytest.approx(stats[key], rel=1e-5), key


def test_ddp_ranks_keep_equal_batch_norm_statistics(ddp_results):
    rank0, rank1 = (torch.load(f"{ddp_results}.bn.{rank}") for rank in (0, 1))
    assert set(rank0) == {"norm.running_mean", "norm.running_var", "norm.num_batches_tracked"}
    for name in rank0:
        torch.testing.assert_close(rank0[name], rank1[name], rtol=0, atol=0, msg=name)
    # 3 batches × 2 cores: 6 forwards on each rank, and the statistics moved from their start.
    assert rank0["norm.num_batches_tracked"].item() == 6
    assert not torch.allclose(rank0["norm.running_mean"], torch.zeros(5))
