"""Scoring a canary dir end to end (the CLI and score_exposure): outputs, errors, memorisation."""
import json
import math
import shutil

import pytest

from espnet_pcc import kaldi_dir
from espnet_pcc.bin import score_exposure
from espnet_pcc.measurement.exposure import run, schema, scoring

pytestmark = pytest.mark.needs_tts  # every test uses the generated canary dir


def test_score_exposure_end_to_end(tiny_model, canaries, tmp_path, capsys):
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
    # the printed table and summary.tsv have the same header
    assert (out / "summary.tsv").read_text().splitlines()[0].split("\t") == printed.splitlines()[0].split()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exposure"]  # no temp dir left


def test_mismatched_checkpoint_is_one_line_error(tiny_model, canaries, tmp_path, capsys, tiny_config):
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

    cfg, ckpt = tiny_model
    model, args = scoring.load_asr_model(cfg, ckpt)
    scorer = scoring.Scorer(model, args, batch_size=8)
    can = kaldi_dir.read(canaries / "canaries")
    targets = [u for u in can.utt_ids if "-x04-" in u]
    speech = [torch.from_numpy(scoring.read_mono(can.wav_scp[u])) for u in targets]
    ys = [torch.from_numpy(scorer.tokenize(u, can.text[u])) for u in targets]

    x, xl = scoring.pad(speech, 0.0), torch.tensor([len(s) for s in speech])
    y, yl = scoring.pad(ys, -1), torch.tensor([len(t) for t in ys])
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
    summ = run.score_exposure(cfg, tmp_path / "mem.pth", canaries, tmp_path / "exp", log_every=0)
    g = {x["repeat_count"]: x for x in summ["repeat_counts"]}
    assert g[4]["rank_exposure"]["mean"] == pytest.approx(math.log2(9))  # rank 1: the cap
    assert g[4]["extrapolated_exposure"]["mean"] > math.log2(9)
    assert g[4]["rank_exposure"]["mean"] > g[1]["rank_exposure"]["mean"]


def test_canary_reference_id_collision(canaries, tmp_path, capsys):
    """A reference that shares an id with a canary is refused before any model is loaded."""
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


def test_output_files_from_hand_values():
    """scores.tsv and exposure.tsv lines, from values worked out by hand."""
    text = schema.scores_tsv(["c1", "r1"], {"c1": 4}, {"c1": (6.0, 3), "r1": (2.0, 4)},
                             {"c1": 2.0, "r1": 0.5})
    assert text.splitlines() == ["utt_id\tkind\trepeat_count\tnum_tokens\tnll_sum\tscore",
                                 "c1\tcanary\t4\t3\t6.000000\t2.000000",
                                 "r1\treference\t0\t4\t2.000000\t0.500000"]
    per = [{"id": "c1", "repeat_count": 4, "score": 2.0, "rank": 1, "rank_exposure": 3.0,
            "extrapolated_exposure": math.inf, "text": "a b"}]
    assert schema.exposure_tsv(per).splitlines()[1] == "c1\t4\t2.000000\t1\t3.0000\tinf\ta b"
