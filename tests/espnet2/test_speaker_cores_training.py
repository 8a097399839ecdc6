"""Speaker cores through asr_train: the sampler, the trainer's split, epsilon per speaker."""
import shutil
import subprocess
from unittest import mock

import numpy as np
import pytest

from asr_train_helpers import torchrun_asr_train, train_args, train_stats
from espnet_pcc.bin import asr_train
from espnet_pcc.core import accounting
from espnet_pcc.core.clip_config import ClipConfig, ClipConfigError
from espnet_pcc.core.cores import split_by_speaker
from espnet_pcc.core.data_loader.poisson import EMPTY
from espnet_pcc.espnet2 import trainer
from espnet_pcc.espnet2.task import PCCASRTask
from espnet_pcc.espnet2.trainer import PCCTrainer

SPEAKER_CORES = {"clip": "per_core", "max_epoch": 1,
                 "clip_conf": {"max_norm": 1.0, "num_cores": 2, "core_by": "speaker"}}
CORPUS_SPEAKERS = {"utt0": "x", "utt1": "x", "utt2": "x", "utt3": "y", "utt4": "y",
                   "utt5": "y", "utt6": "y", "utt7": "z"}


@pytest.fixture
def speaker_corpus(corpus, tmp_path):
    """The 8-utterance corpus with an utt2spk of 3 speakers (3, 4 and 1 utterances)."""
    root = tmp_path / "data"
    shutil.copytree(corpus, root, ignore=shutil.ignore_patterns("*.wav"))  # wav.scp: abs paths
    (root / "utt2spk").write_text("".join(f"{u} {s}\n" for u, s in CORPUS_SPEAKERS.items()))
    return root


def test_asr_train_with_speaker_cores(speaker_corpus, tmp_path):
    out = tmp_path / "exp"
    cores = []

    def spy(batch, speaker_of):
        split = split_by_speaker(batch, speaker_of)
        cores.append([core["utt_id"] for core in split])
        return split

    with mock.patch("espnet_pcc.espnet2.trainer.split_by_speaker", side_effect=spy):
        asr_train.main(train_args(speaker_corpus, out, SPEAKER_CORES))
    # batch_size 4 over num_cores 2: cores of at most 2 utterances of one speaker; the
    # speakers give chunks x:(2,1) y:(2,2) z:(1), so 2 steps of 2 cores (one chunk of y
    # or another speaker's is left for lack of a second speaker).
    assert len(cores) == 2
    for micro_batch in cores:
        assert len(micro_batch) == 2
        speakers = [{CORPUS_SPEAKERS[u] for u in core} for core in micro_batch]
        assert all(len(s) == 1 and 1 <= len(core) <= 2 for s, core in zip(speakers, micro_batch))
        assert speakers[0] != speakers[1]
    stats = train_stats(out, 1)
    assert stats["num_cores"] == 2
    assert np.isfinite(stats["loss"])
    assert (out / "valid.loss.best.pth").exists()


@pytest.mark.parametrize("utt2spk,message", [
    (None, "clip_conf.utt2spk {data}/utt2spk: no such file"),
    ("{data}/spk", "clip_conf.utt2spk {data}/spk: no such file"),
])
def test_asr_train_without_utt2spk_fails_before_writing(speaker_corpus, tmp_path, capsys,
                                                       utt2spk, message):
    (speaker_corpus / "utt2spk").unlink()
    conf = dict(SPEAKER_CORES["clip_conf"])
    if utt2spk is not None:
        conf["utt2spk"] = utt2spk.format(data=speaker_corpus)
    out = tmp_path / "exp"
    with pytest.raises(SystemExit) as exit_info:
        asr_train.main(train_args(speaker_corpus, out, dict(SPEAKER_CORES, clip_conf=conf)))
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"asr_train: error: {message.format(data=speaker_corpus)}"]
    assert not out.exists()


def test_check_args_reads_the_speakers_and_rejects_mixing_options(speaker_corpus, tmp_path):
    args = PCCASRTask.get_parser().parse_args(train_args(speaker_corpus, tmp_path / "exp"))
    args.clip, args.clip_conf = "adaptive_per_core", {"core_by": "speaker", "num_cores": 2}
    checked = PCCASRTask.check_args(args)
    assert checked.speaker_of == CORPUS_SPEAKERS
    assert "speaker_of" not in vars(checked)  # not written to config.yaml
    options = PCCTrainer.build_options(checked)
    assert options.speaker_of is checked.speaker_of
    assert options.clip_config == ClipConfig.from_options("adaptive_per_core",
                                                          args.clip_conf)
    args.shuffle_within_batch = True
    with pytest.raises(ClipConfigError, match="does not support --shuffle_within_batch"):
        PCCASRTask.check_args(args)
    args.shuffle_within_batch, args.accum_grad = False, 2
    with pytest.raises(ClipConfigError, match="a step has 4 cores .* training set has 3 "):
        PCCASRTask.check_args(args)


def test_torchrun_two_ranks_with_speaker_cores(speaker_corpus, tmp_path):
    """DDP (2 gloo ranks): each rank trains its own speaker core of every step."""
    out = tmp_path / "ddp"
    conf = dict(SPEAKER_CORES, clip_conf=dict(SPEAKER_CORES["clip_conf"], num_cores=1))
    args = train_args(speaker_corpus, out, conf,
                      extra=["--dist_backend", "gloo", "--multiprocessing_distributed", "false"])
    result = subprocess.run(torchrun_asr_train(args), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    # batch_size 4 over 2 ranks x 1 core: one speaker's (at most 2) utterances per rank,
    # planned by every rank alike.
    assert train_stats(out, 1)["num_cores"] == 2
    assert "SpeakerCoreSampler(N-utterances=8, N-speakers=3, num_cores=1, utts_per_core=2, " \
           "accum_grad=1, world_size=2" in result.stdout + result.stderr


def test_speaker_level_epsilon_with_poisson_sampled_speakers(speaker_corpus, tmp_path):
    """core_by speaker with noise: each step samples speakers (q = 2 core slots / 3 speakers),
    each joining speaker brings at most m = 4 // 2 = 2 of its utterances into one hashed
    core, so the epsilon reported is per speaker: delta = 0.01/3, sensitivity 2C."""
    out = tmp_path / "spk_dp"
    conf = dict(SPEAKER_CORES, max_epoch=2, clip_conf=dict(
        SPEAKER_CORES["clip_conf"], noise_multiplier=1.0, noise_seed=3))
    seen = []
    forward = trainer._forward

    def record(model, batch):  # every item is one forward: a core, or an empty slot's stand-in
        seen.append(list(batch["utt_id"]))
        return forward(model, batch)

    not_split = AssertionError("a hashed core is trained as drawn, not split again")
    with mock.patch("espnet_pcc.espnet2.trainer.split_by_speaker", side_effect=not_split), \
            mock.patch("espnet_pcc.espnet2.trainer.split_batch", side_effect=not_split), \
            mock.patch("espnet_pcc.espnet2.trainer._forward", side_effect=record):
        asr_train.main(train_args(speaker_corpus, out, conf))
    # 2 items (core slots) a step, 2 steps an epoch, 2 epochs (validation does not go
    # through the trainer's _forward).
    assert len(seen) == 8 and any(core != [EMPTY] for core in seen)
    for step in range(4):
        cores = [c for c in seen[2 * step:2 * step + 2] if c != [EMPTY]]
        speakers = [s for c in cores for s in {CORPUS_SPEAKERS[u] for u in c}]
        assert len(speakers) == len(set(speakers))  # no speaker in two cores of a step
        for c in cores:
            for s in {CORPUS_SPEAKERS[u] for u in c}:
                assert sum(CORPUS_SPEAKERS[u] == s for u in c) <= 2
    for epoch, steps in ((1, 2), (2, 4)):
        assert train_stats(out, epoch)["dp_epsilon"] == pytest.approx(
            accounting.epsilon(1.0, 2 / 3, steps, 0.01 / 3, sensitivity=2))


def test_speed_perturbed_copies_of_a_speaker_are_that_speaker(speaker_corpus, tmp_path):
    """ESPnet's speed perturbation names a copy's speaker sp<f>-<speaker>: x, sp0.9-x and
    sp1.1-x are one speaker, never two cores of one step.  Their 3 chunks and y's 1 make one
    step (x, y); counted as 3 speakers they made 2 steps, one with two cores of x."""
    speakers = {"utt0": "x", "utt1": "x", "utt2": "sp0.9-x", "utt3": "sp0.9-x",
                "utt4": "sp1.1-x", "utt5": "sp1.1-x", "utt6": "y", "utt7": "y"}
    (speaker_corpus / "utt2spk").write_text("".join(f"{u} {s}\n" for u, s in speakers.items()))
    cores = []

    def spy(batch, speaker_of):
        split = split_by_speaker(batch, speaker_of)
        cores.append([list(core["utt_id"]) for core in split])
        return split

    with mock.patch("espnet_pcc.espnet2.trainer.split_by_speaker", side_effect=spy):
        asr_train.main(train_args(speaker_corpus, tmp_path / "exp", SPEAKER_CORES))
    assert len(cores) == 1  # accum_grad 1: a micro-batch is a step
    step_speakers = [{speakers[u].split("-")[-1] for u in core} for core in cores[0]]
    assert step_speakers == [{"x"}, {"y"}] or step_speakers == [{"y"}, {"x"}]


def test_a_resume_with_another_privacy_unit_is_one_line(speaker_corpus, tmp_path, capsys):
    """An epoch accounted per utterance cannot be continued per speaker: one epsilon cannot
    compose both (espnet_pcc.core.accounting.check_history); refused before espnet2's resume has
    loaded the checkpoint."""
    out = tmp_path / "units"
    per_utterance = {"clip": "per_core", "max_epoch": 1,
                     "clip_conf": {"max_norm": 1.0, "num_cores": 2, "noise_multiplier": 1.0,
                                   "noise_seed": 3}}
    asr_train.main(train_args(speaker_corpus, out, per_utterance))
    per_speaker = dict(per_utterance, max_epoch=2, clip_conf=dict(
        per_utterance["clip_conf"], core_by="speaker"))
    capsys.readouterr()
    with mock.patch.object(PCCTrainer, "resume", wraps=PCCTrainer.resume) as resume, \
            pytest.raises(SystemExit) as exit_info:
        asr_train.main(train_args(speaker_corpus, out, per_speaker, extra=["--resume", "true"]))
    assert exit_info.value.code == 2
    assert not resume.called
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == ("asr_train: error: --resume: the checkpoint's noisy steps were accounted "
                       "per utterance, this run's are per speaker, and one epsilon cannot "
                       "compose both; resume with the checkpoint's privacy unit or start a new "
                       "run"), err
    assert not (out / "2epoch.pth").exists()
