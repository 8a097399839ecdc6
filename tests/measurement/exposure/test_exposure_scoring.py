"""Loading a trained model and scoring with it: the NLL equals ESPnet's own attention loss."""
import numpy as np
import pytest
import yaml

from espnet_pcc import kaldi_dir
from espnet_pcc.measurement.exposure import scoring
from espnet_pcc.measurement.exposure.metric import ExposureError


@pytest.mark.needs_tts
def test_att_nll_equals_espnet_att_loss(tiny_model, canaries):
    """Our per-utterance NLL sum == ESPnet's own _calc_att_loss (lsm 0) on a batch of one."""
    import torch

    cfg, ckpt = tiny_model
    model, args = scoring.load_asr_model(cfg, ckpt)
    scorer = scoring.Scorer(model, args, batch_size=1)
    d = kaldi_dir.read(canaries / "references")
    items = [(u, d.wav_scp[u], d.text[u]) for u in d.utt_ids[:4]]
    got = scorer.score(items, log_every=0)
    batched = scoring.Scorer(model, args, batch_size=4).score(items, log_every=0)
    for uid, wav, text in items:
        speech = torch.from_numpy(scoring.read_mono(wav))[None]
        ys = torch.from_numpy(scorer.tokenize(uid, text))[None]
        with torch.no_grad():
            enc, enc_l = model.encode(speech, torch.tensor([speech.shape[1]]))
            loss, _ = model._calc_att_loss(enc, enc_l, ys, torch.tensor([ys.shape[1]]))[:2]
        assert got[uid][1] == len(text) + 1  # chars (spaces included) + <eos>
        assert got[uid][0] == pytest.approx(loss.item(), rel=1e-4)
        # batching (padding, sort by length) changes scores by float noise only
        assert batched[uid][0] == pytest.approx(got[uid][0], rel=2e-3)


def test_loader_resolves_recipe_relative_stats_file(tmp_path, monkeypatch, tiny_config, build_model):
    """config.yaml's global_mvn stats path is relative to the recipe dir; scoring from another
    cwd still works, and a missing file is a one-line error naming it."""
    import torch

    recipe = tmp_path / "recipe"
    (recipe / "exp" / "stats").mkdir(parents=True)
    (recipe / "exp" / "asr").mkdir()
    np.savez(recipe / "exp" / "stats" / "feats_stats.npz", count=np.array(10.0),
             sum=np.zeros(40), sum_square=np.full(40, 10.0))
    conf = yaml.safe_load(tiny_config(tmp_path).read_text())
    conf["normalize"] = "global_mvn"
    conf["normalize_conf"] = {"stats_file": "exp/stats/feats_stats.npz"}
    cfg = recipe / "exp" / "asr" / "config.yaml"
    cfg.write_text(yaml.safe_dump(conf))
    monkeypatch.chdir(recipe)
    model, _ = build_model(cfg)
    torch.save(model.state_dict(), recipe / "exp" / "asr" / "model.pth")
    monkeypatch.chdir(tmp_path)  # elsewhere: the relative path no longer exists from the cwd
    model, args = scoring.load_asr_model(cfg, recipe / "exp" / "asr" / "model.pth")
    assert type(model.normalize).__name__ == "GlobalMVN"
    (recipe / "exp" / "stats" / "feats_stats.npz").unlink()
    with pytest.raises(ExposureError, match="stats_file 'exp/stats/feats_stats.npz' .* not found"):
        scoring.load_asr_model(cfg, recipe / "exp" / "asr" / "model.pth")


def test_loader_reads_an_espnet3_model_its_lightning_checkpoint_and_token_list_path(
        tmp_path, monkeypatch, tiny_config, build_model):
    """ESPnet3 writes the token list into config.yaml as a path relative to the recipe dir and
    the model as a Lightning checkpoint (its state_dict under "state_dict", beside the loop's
    state): both load from another cwd, to the same weights."""
    import torch

    recipe = tmp_path / "recipe"
    (recipe / "data").mkdir(parents=True)
    (recipe / "exp" / "asr").mkdir(parents=True)
    conf = yaml.safe_load(tiny_config(tmp_path).read_text())
    tokens = conf["token_list"]
    (recipe / "data" / "tokens.txt").write_text("\n".join(tokens) + "\n")
    conf["token_list"] = "./data/tokens.txt"
    cfg = recipe / "exp" / "asr" / "config.yaml"
    cfg.write_text(yaml.safe_dump(conf))
    monkeypatch.chdir(recipe)
    model, _ = build_model(cfg)
    ckpt = recipe / "exp" / "asr" / "last.ckpt"
    torch.save({"state_dict": model.state_dict(), "epoch": 0, "global_step": 3,
                "loops": {"fit_loop": {"epoch_progress": {"total": {"completed": 1}}}},
                "optimizer_states": [{"state": {}, "param_groups": []}]}, ckpt)
    monkeypatch.chdir(tmp_path)
    loaded, args = scoring.load_asr_model(cfg, ckpt)
    assert args.token_list == tokens  # read from the file the config names
    for name, tensor in model.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[name], tensor)
    (recipe / "data" / "tokens.txt").unlink()
    with pytest.raises(ExposureError, match=r"token_list './data/tokens.txt' .* not found"):
        scoring.load_asr_model(cfg, ckpt)


def test_fs_hz_reads_espnet_frontend_rates():
    assert scoring.fs_hz(16000) == 16000
    assert scoring.fs_hz("16k") == 16000
    assert scoring.fs_hz("22.05k") == 22050
