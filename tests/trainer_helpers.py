"""A tiny ESPnet-style model and a driver for PCCTrainer.train_one_epoch.

Shared by the trainer tests and the 2-process DDP test (which imports it in
spawned workers, so it lives in a module rather than a conftest).
"""
from __future__ import annotations

from typing import Dict, List, Sequence

import torch
from espnet2.torch_utils.device_funcs import force_gatherable
from espnet2.train.abs_espnet_model import AbsESPnetModel
from espnet2.train.distributed_utils import DistributedOption
from espnet2.train.reporter import Reporter

from espnet_pcc.core.clip_config import ClipConfig
from espnet_pcc.core.optimizers import PerCoreClipOptimizer
from espnet_pcc.espnet2.task import PCCASRTask
from espnet_pcc.espnet2.trainer import PCCTrainer

FEAT = 5


class TinyASRLike(AbsESPnetModel):
    """Masked mean-pool → MLP → regression to the first text symbols.

    Returns (batch-mean loss, stats, weight=batch size) as ESPnet models do.
    """

    def __init__(self, seed: int = 0, batch_norm: bool = False):
        super().__init__()
        torch.manual_seed(seed)
        # BatchNorm on the pooled features: running statistics, as the conformer's conv module.
        self.norm = torch.nn.BatchNorm1d(FEAT) if batch_norm else torch.nn.Identity()
        self.proj = torch.nn.Sequential(torch.nn.Linear(FEAT, 8), torch.nn.Tanh(),
                                        torch.nn.Linear(8, 2))

    def forward(self, speech, speech_lengths, text, text_lengths, **kwargs):
        mask = (torch.arange(speech.shape[1])[None, :] < speech_lengths[:, None]).float()
        pooled = self.norm((speech * mask[..., None]).sum(1) / speech_lengths[:, None].float())
        err = ((self.proj(pooled) - text[:, :2].float()) ** 2).mean(-1)
        loss = err.mean()
        # force_gatherable makes 0-dim values 1-dim, as every ESPnet model returns them.
        return force_gatherable((loss, {"loss": loss.detach(), "acc": None},
                                 speech.shape[0]), loss.device)

    def collect_feats(self, **kwargs):
        raise NotImplementedError


def make_batches(num_batches: int, batch_size: int, seed: int = 3,
                 poison: Sequence[int] = ()) -> List[Dict]:
    """Random padded batches; `poison` lists batch indices whose first utterance is inf."""
    g = torch.Generator().manual_seed(seed)
    batches = []
    for b in range(num_batches):
        lengths = torch.randint(3, 9, (batch_size,), generator=g)
        speech = torch.randn(batch_size, int(lengths.max()), FEAT, generator=g) * (1 + 3 * b % 4)
        if b in poison:
            speech[0] = float("inf")
        text = torch.randint(1, 5, (batch_size, 3), generator=g)
        batches.append({"speech": speech, "speech_lengths": lengths, "text": text,
                        "text_lengths": torch.full((batch_size,), 3),
                        "utt_id": [f"b{b}u{i}" for i in range(batch_size)]})
    return batches


def shard(batch: Dict, start: int, end: int) -> Dict:
    """Utterances [start, end) of a batch (a rank's share of a global batch)."""
    return {k: v[start:end] for k, v in batch.items()}


def trainer_options(clip: str, clip_conf: Dict, accum_grad: int = 1, grad_clip: float = 5.0):
    """PCCTrainerOptions as asr_train builds them: check_args, then build_options."""
    args = PCCASRTask.get_parser().parse_args([])
    args.clip, args.clip_conf = clip, dict(clip_conf)
    args.accum_grad, args.grad_clip = accum_grad, grad_clip
    args.log_interval, args.ngpu = 1000, 0
    return PCCTrainer.build_options(PCCASRTask.check_args(args))


def run_epoch(trainer, model, optimizer, batches, options, distributed=False, model_for_ddp=None,
              scaler=None):
    """One epoch of `trainer` over `batches`; returns the epoch's reporter stats."""
    reporter = Reporter()
    reporter.set_epoch(1)
    iterator = [(b["utt_id"], {k: v for k, v in b.items() if k != "utt_id"}) for b in batches]
    with reporter.observe("train", 1) as sub:
        trainer.train_one_epoch(
            model=model_for_ddp or model, iterator=iterator, optimizers=[optimizer],
            schedulers=[None], scaler=scaler, reporter=sub, summary_writer=None,
            options=options,
            distributed_option=DistributedOption(distributed=distributed, ngpu=0))
    return {k2: reporter.get_value("train", k2, 1) for k2 in reporter.get_keys2("train", 1)}


def wrapped_sgd(model, clip, max_norm, lr=0.5):
    return PerCoreClipOptimizer(torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9),
                                clip_config=ClipConfig.from_options(clip, {"max_norm": max_norm}))


class CountingWrapper(torch.optim.Optimizer):
    """A second optimizer wrapper, by composition rather than subclassing PerCoreClipOptimizer:
    it implements `CoreClippingOptimizer` by handing every call to a `PerCoreClipOptimizer`,
    and counts the cores it was given (class-wide, so a test can read them after asr_train
    returns).  A torch Optimizer, as ESPnet checks."""

    cores_added = 0

    def __init__(self, optimizer, *, clip_config, noise_seed=0, expected_cores=None):
        # No Optimizer.__init__: param_groups, state, defaults and steps are the inner one's.
        self.inner = PerCoreClipOptimizer(optimizer, clip_config=clip_config,
                                          noise_seed=noise_seed, expected_cores=expected_cores)

    def __getattr__(self, name):
        return getattr(self.__dict__["inner"], name)

    def add_core(self, loss_scale=1.0):
        CountingWrapper.cores_added += 1
        self.inner.add_core(loss_scale)

    def reduce_cores(self):
        return self.inner.reduce_cores()

    def gather_pending(self):
        self.inner.gather_pending()

    def step(self, closure=None):
        return self.inner.step(closure)

    def zero_grad(self, set_to_none=True):
        self.inner.zero_grad(set_to_none)

    def state_dict(self):
        return self.inner.state_dict()

    def load_state_dict(self, state_dict):
        self.inner.load_state_dict(state_dict)


__all__ = ["CountingWrapper", "TinyASRLike", "make_batches", "shard", "trainer_options", "run_epoch", "wrapped_sgd"]
