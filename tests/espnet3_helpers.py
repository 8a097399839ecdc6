"""Test-only ESPnet3 pieces: a tiny dataset (an ESPnet3 `BaseDataset`, loaded by ESPnet3's
DataOrganizer from this module's dotted path) and a tiny model with ESPnet's
``loss, stats, weight = model(**batch)`` contract, for running ESPnet3's own trainer wrapper
on a training YAML in seconds."""
from __future__ import annotations

import numpy as np
import torch
from espnet3.components.data.base_dataset import BaseDataset
from espnet3.contract import Field


class Dataset(BaseDataset):
    """`num_items` random waveforms of 40-80 samples; the target is a number per item."""

    fields = (Field("speech", "audio"), Field("target", "audio"))

    def __init__(self, num_items: int = 16, seed: int = 0):
        rng = np.random.default_rng(seed)
        self.items = []
        for i in range(num_items):
            speech = (rng.standard_normal(int(rng.integers(40, 81))) * (0.2 + 0.3 * i)
                      ).astype(np.float32)
            target = np.array([rng.standard_normal() * 2.0], dtype=np.float32)
            self.items.append({"speech": speech, "target": target})

    def __len__(self):
        return len(self.items)

    def __getitem__(self, index):
        return self.items[index]


class TinyModel(torch.nn.Module):
    """Predicts the target from the waveform's mean, RMS and peak (padding masked)."""

    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(),
                                          torch.nn.Linear(4, 1))

    def forward(self, speech, speech_lengths, target, target_lengths=None, **kwargs):
        mask = (torch.arange(speech.shape[1])[None, :] < speech_lengths[:, None]).float()
        count = mask.sum(1)
        mean = (speech * mask).sum(1) / count
        rms = ((speech ** 2 * mask).sum(1) / count).sqrt()
        peak = (speech.abs() * mask).max(1).values
        prediction = self.linear(torch.stack([mean, rms, peak], dim=1))
        loss = torch.nn.functional.mse_loss(prediction, target[:, :1])
        # "acc" too, as an ASR model reports it (the e-branchformer YAML selects on valid/acc).
        acc = ((prediction - target[:, :1]).abs() < 1.0).float().mean()
        weight = torch.tensor(float(speech.shape[0]))
        return loss, {"loss": loss.detach(), "acc": acc.detach()}, weight


def tiny_data_config(num_items: int = 32, batch_size: int = 4) -> dict:
    """ESPnet3's dataset and dataloader sections for `Dataset`: plain DataLoaders, in order."""
    def source(items, seed):
        return [{"data_src": "espnet3_helpers",
                 "data_src_args": {"num_items": items, "seed": seed}}]

    def loader():
        return {"iter_factory": None, "batch_size": batch_size, "shuffle": False}

    return {
        "dataset": {"_target_": "espnet3.components.data.data_organizer.DataOrganizer",
                    "_recursive_": False, "train": source(num_items, 0),
                    "valid": source(batch_size, 1)},
        "dataloader": {"collate_fn": {"_target_": "espnet2.train.collate_fn.CommonCollateFn",
                                      "int_pad_value": -1},
                       "train": loader(), "valid": loader()},
    }
