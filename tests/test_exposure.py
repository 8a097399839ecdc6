"""Exposure maths (hand-computed cases) and end-to-end scoring of a tiny real ESPnet model."""
import json
import math
import shutil
import string

import numpy as np
import pytest

from espnet_pcc import exposure as ex

# --------------------------------------------------------------------------- maths


def test_rank_one_of_1023_is_10_bits():
    refs = np.arange(1, 1024, dtype=float)  # 1023 references, scores 1..1023
    assert ex.rank_exposure([0.5], refs)[0] == pytest.approx(10.0, abs=1e-12)
    # worse than every reference: rank 1024 of |R| = 1024 -> 0 bits
    assert ex.rank_exposure([5000.0], refs)[0] == pytest.approx(0.0, abs=1e-12)
    # between the 511th and 512th reference: rank 512 -> 1 bit
    assert ex.rank_exposure([511.5], refs)[0] == pytest.approx(1.0)
    # TF-Privacy's convention: log2(n) - log2(rank)
    assert ex.rank_exposure([0.5], refs, include_canary=False)[0] == pytest.approx(math.log2(1023))


def test_ranks_ties_favour_the_canary():
    refs = [1.0, 2.0, 2.0, 3.0]
    assert ex.ranks([2.0, 0.0, 3.5, 2.5, float("nan")], refs).tolist() == [2, 1, 5, 4, 5]
    assert ex.rank_exposure([1.0], [1.0, 1.0, 1.0])[0] == pytest.approx(2.0)  # all tied: rank 1


def test_chance_exposure_is_about_log2_e():
    assert ex.chance_rank_exposure(2000) == pytest.approx(math.log2(math.e), abs=0.01)
    rng = np.random.default_rng(0)
    refs, can = rng.normal(size=2000), rng.normal(size=4000)  # same distribution: no memorisation
    assert ex.rank_exposure(can, refs).mean() == pytest.approx(ex.chance_rank_exposure(2000), abs=0.1)


def test_extrapolation_matches_skewnorm_and_exceeds_rank_cap():
    from scipy.stats import skewnorm

    rng = np.random.default_rng(1)
    refs = skewnorm.rvs(3.0, loc=2.0, scale=0.5, size=1000, random_state=rng)
    params = ex.fit_skewnorm(refs)
    assert params[0] > 0 and params[1] == pytest.approx(2.0, abs=0.2)
    s = np.array([refs.min() - 1.0, np.median(refs)])
    e = ex.extrapolated_exposure(s, params)
    assert e[1] == pytest.approx(1.0, abs=0.15)  # median -> CDF 1/2 -> 1 bit
    assert e[1] == pytest.approx(-math.log2(skewnorm.cdf(s[1], *params)))
    cap = math.log2(len(refs) + 1)
    assert ex.rank_exposure(s[:1], refs)[0] == pytest.approx(cap)
    assert e[0] > cap + 5  # far below all references: extrapolation goes past the rank cap
    assert np.isfinite(ex.extrapolated_exposure([refs.min() - 5.0], params)[0])


def test_compute_exposures_summary_hand_case():
    refs = [float(i) for i in range(1, 8)]  # 7 references -> |R| = 8, cap 3 bits
    scores = {"a": 0.5, "b": 4.5, "c": 0.1, "d": 9.0}
    counts = {"a": 4, "b": 4, "c": 1, "d": 1}
    per, summ = ex.compute_exposures(scores, counts, refs)
    byid = {p["id"]: p for p in per}
    assert [byid[i]["rank"] for i in "abcd"] == [1, 5, 1, 8]
    assert byid["b"]["rank_exposure"] == pytest.approx(3 - math.log2(5))
    g = {x["repeat_count"]: x for x in summ["repeat_counts"]}
    assert list(g) == [1, 4] and g[4]["num_canaries"] == 2
    assert g[4]["rank_exposure"]["mean"] == pytest.approx((3 + 3 - math.log2(5)) / 2)
    assert g[4]["rank_exposure"]["std"] == pytest.approx(math.log2(5) / 2)
    assert g[1]["rank_exposure"]["max"] == pytest.approx(3.0)
    assert summ["rank_exposure_cap"] == pytest.approx(3.0)
    table = ex.format_summary({**summ, "score": "att_nll"})
    assert "rank_exp_mean" in table and "3.000" in table
    with pytest.raises(ex.ExposureError, match="need >= 2 references, got 1"):
        ex.compute_exposures(scores, counts, [1.0])


# --------------------------------------------------------------------------- tiny real model
TOKENS = ["<blank>", "<unk>", "<space>"] + list(string.ascii_lowercase) + ["'", "<sos/eos>"]


def tiny_config(tmp_path, adim=32, extra=True):
    """A real ESPnet ASR config (as asr_train writes it) for a 1-block transformer, char tokens."""
    import yaml
    from espnet2.tasks.asr import ASRTask

    args = ASRTask.get_parser().parse_args([
        "--token_type", "char", "--token_list", str(_token_file(tmp_path)),
        "--frontend_conf", "{n_fft: 512, hop_length: 160, n_mels: 40}",
        "--encoder", "transformer",
        "--encoder_conf", f"{{output_size: {adim}, attention_heads: 2, linear_units: 64, num_blocks: 1}}",
        "--decoder", "transformer",
        "--decoder_conf", "{attention_heads: 2, linear_units: 64, num_blocks: 1}",
        "--model_conf", "{ctc_weight: 0.3, lsm_weight: 0.0}",
    ])
    conf = vars(args)
    conf["token_list"] = TOKENS
    if extra:  # keys added by espnet_pcc's task: the loader must accept them
        conf["clip"] = "pcc"
        conf["clip_conf"] = {"clip_norm": 1.0}
    path = tmp_path / f"config_{adim}.yaml"
    path.write_text(yaml.safe_dump(conf))
    return path


def _token_file(tmp_path):
    p = tmp_path / "tokens.txt"
    p.write_text("\n".join(TOKENS) + "\n")
    return p


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    import torch

    tmp = tmp_path_factory.mktemp("model")
    cfg = tiny_config(tmp)
    torch.manual_seed(0)
    model, _ = _build(cfg)
    torch.save(model.state_dict(), tmp / "model.pth")
    return cfg, tmp / "model.pth"


def _build(cfg):
    import argparse

    import yaml
    from espnet2.tasks.asr import ASRTask

    args = argparse.Namespace(**yaml.safe_load(cfg.read_text()))
    return ASRTask.build_model(args), args


needs_tts = pytest.mark.skipif(
    not (shutil.which("espeak-ng") and shutil.which("sox")), reason="espeak-ng/sox not installed"
)


@pytest.fixture(scope="module")
def canaries(tmp_path_factory):
    if not (shutil.which("espeak-ng") and shutil.which("sox")):
        pytest.skip("espeak-ng/sox not installed")
    from espnet_pcc.canary.generate import CanaryConfig, generate

    out = tmp_path_factory.mktemp("can") / "c"
    vocab = ["apple", "river", "stone", "yellow", "garden", "window", "silver", "candle", "forest"]
    generate(out, vocab, CanaryConfig(num_words=3, repeat_counts=(1, 4), canaries_per_count=2,
                                      num_references=8, speed=1.6, seed=3), nj=2)
    return out


def test_att_nll_equals_espnet_att_loss(tiny_model, canaries):
    """Our per-utterance NLL sum == ESPnet's own _calc_att_loss (lsm 0) on a batch of one."""
    import torch

    from espnet_pcc import kaldi_dir

    cfg, ckpt = tiny_model
    model, args = ex.load_asr_model(cfg, ckpt)
    scorer = ex.Scorer(model, args, batch_size=1)
    d = kaldi_dir.read(canaries / "references")
    items = [(u, d.wav_scp[u], d.text[u]) for u in d.utt_ids[:4]]
    got = scorer.score(items, log_every=0)
    batched = ex.Scorer(model, args, batch_size=4).score(items, log_every=0)
    for uid, wav, text in items:
        speech = torch.from_numpy(ex._read_mono(wav))[None]
        ys = torch.from_numpy(scorer.tokenize(uid, text))[None]
        with torch.no_grad():
            enc, enc_l = model.encode(speech, torch.tensor([speech.shape[1]]))
            loss, _ = model._calc_att_loss(enc, enc_l, ys, torch.tensor([ys.shape[1]]))[:2]
        assert got[uid][1] == len(text) + 1  # chars (spaces included) + <eos>
        assert got[uid][0] == pytest.approx(loss.item(), rel=1e-4)
        # batching (padding, sort by length) changes scores by float noise only
        assert batched[uid][0] == pytest.approx(got[uid][0], rel=2e-3)


def test_score_exposure_end_to_end(tiny_model, canaries, tmp_path, capsys):
    from espnet_pcc.bin import score_exposure

    cfg, ckpt = tiny_model
    out = tmp_path / "exposure"
    score_exposure.main(["--asr_train_config", str(cfg), "--asr_model_file", str(ckpt),
                         "--canary_dir", str(canaries), "--output_dir", str(out),
                         "--batch_size", "3", "--nj", "1"])
    printed = capsys.readouterr().out
    assert "rank_exp_mean" in printed and "|R| = 8" in printed
    summ = json.loads((out / "summary.json").read_text())
    assert summ["format"] == "espnet-pcc-exposure/1" and summ["score"] == "att_nll"
    assert [g["repeat_count"] for g in summ["repeat_counts"]] == [1, 4]
    assert summ["rank_exposure_cap"] == pytest.approx(math.log2(9))
    rows = (out / "scores.tsv").read_text().splitlines()
    assert len(rows) == 1 + 4 + 8
    assert all(math.isfinite(float(r.split("\t")[5])) and float(r.split("\t")[5]) > 0 for r in rows[1:])
    per = json.loads((out / "exposure.json").read_text())["canaries"]
    assert len(per) == 4 and all(0 <= p["rank_exposure"] <= math.log2(9) + 1e-9 for p in per)
    assert (out / "summary.tsv").read_text().count("\n") == 3
    assert (out / "exposure.tsv").read_text().count("\n") == 5


def test_mismatched_checkpoint_is_one_line_error(tiny_model, canaries, tmp_path, capsys):
    from espnet_pcc.bin import score_exposure

    _, ckpt = tiny_model
    other = tiny_config(tmp_path, adim=48)
    with pytest.raises(SystemExit) as e:
        score_exposure.main(["--asr_train_config", str(other), "--asr_model_file", str(ckpt),
                             "--canary_dir", str(canaries), "--output_dir", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "Traceback" not in err
    assert "does not match config" in err and "shape mismatches" in err and "[48" in err
    assert not (tmp_path / "o").exists()
    with pytest.raises(SystemExit):
        score_exposure.main(["--asr_train_config", str(other), "--asr_model_file",
                             str(tmp_path / "nope.pth"), "--canary_dir", str(canaries),
                             "--output_dir", str(tmp_path / "o")])
    assert "nope.pth not found" in capsys.readouterr().err


def test_memorised_canary_gets_high_exposure(tiny_model, canaries, tmp_path):
    """Overfit the tiny model on the x4 canaries: they must outrank every reference."""
    import torch

    from espnet_pcc import kaldi_dir

    cfg, ckpt = tiny_model
    model, args = ex.load_asr_model(cfg, ckpt)
    scorer = ex.Scorer(model, args, batch_size=8)
    can = kaldi_dir.read(canaries / "canaries")
    targets = [u for u in can.utt_ids if "-x04-" in u]
    speech = [torch.from_numpy(ex._read_mono(can.wav_scp[u])) for u in targets]
    ys = [torch.from_numpy(scorer.tokenize(u, can.text[u])) for u in targets]
    from espnet.nets.pytorch_backend.nets_utils import pad_list

    x, xl = pad_list(speech, 0.0), torch.tensor([len(s) for s in speech])
    y, yl = pad_list(ys, -1), torch.tensor([len(t) for t in ys])
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    torch.manual_seed(0)
    for _ in range(40):
        opt.zero_grad()
        loss = model(x, xl, y, yl)[0]
        loss.backward()
        opt.step()
    model.eval()
    torch.save(model.state_dict(), tmp_path / "mem.pth")
    summ = ex.score_exposure(cfg, tmp_path / "mem.pth", canaries, tmp_path / "exp", log_every=0)
    g = {x["repeat_count"]: x for x in summ["repeat_counts"]}
    assert g[4]["rank_exposure"]["mean"] == pytest.approx(math.log2(9))  # rank 1: the cap
    assert g[4]["extrapolated_exposure"]["mean"] > math.log2(9)
    assert g[4]["rank_exposure"]["mean"] > g[1]["rank_exposure"]["mean"]


def test_canary_reference_id_collision(canaries, tmp_path, capsys):
    """A reference that shares an id with a canary is refused before any model is loaded."""
    from espnet_pcc import kaldi_dir
    from espnet_pcc.bin import score_exposure

    bad = tmp_path / "bad"
    shutil.copytree(canaries, bad)
    ref = kaldi_dir.read(bad / "references")
    old = ref.utt_ids[0]
    for table in (ref.wav_scp, ref.text, ref.utt2spk):
        table["canary-x01-000"] = table.pop(old)
    ref.utt2spk["canary-x01-000"] = "canary-x01-000"
    kaldi_dir.write(ref, bad / "references", overwrite=True)
    with pytest.raises(SystemExit):
        score_exposure.main(["--asr_train_config", str(tmp_path / "c.yaml"), "--asr_model_file",
                             str(tmp_path / "m.pth"), "--canary_dir", str(bad),
                             "--output_dir", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert "canary/reference id collision: 'canary-x01-000'" in err and "Traceback" not in err


def test_loader_resolves_recipe_relative_stats_file(tmp_path, monkeypatch):
    """config.yaml's global_mvn stats path is relative to the recipe dir; scoring from another
    cwd still works, and a missing file is a one-line error naming it."""
    import torch
    import yaml

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
    model, _ = _build(cfg)
    torch.save(model.state_dict(), recipe / "exp" / "asr" / "model.pth")
    monkeypatch.chdir(tmp_path)  # elsewhere: the relative path no longer exists from the cwd
    model, args = ex.load_asr_model(cfg, recipe / "exp" / "asr" / "model.pth")
    assert type(model.normalize).__name__ == "GlobalMVN"
    (recipe / "exp" / "stats" / "feats_stats.npz").unlink()
    with pytest.raises(ex.ExposureError, match="stats_file 'exp/stats/feats_stats.npz' .* not found"):
        ex.load_asr_model(cfg, recipe / "exp" / "asr" / "model.pth")
