"""Benchmark: references scored per second by espnet_pcc.measurement.exposure (attention NLL, batched).

Model: the demo conformer (docs/design.md, 'Demo corpus'; 144-d, 4 blocks, 4 heads, 576 units,
kernel 15, conv2d subsampling; 2-block transformer decoder; char tokens), built untrained — the cost
of a forward pass does not depend on the weights. Data: references spoken by espeak-ng exactly as
make_canaries makes them (6 words, random English voice, tempo 1.6).

    python bench/bench_exposure.py [--num_utts 256 --batch_sizes 1 16 32 64 --threads 2]
    python bench/bench_exposure.py --device cuda --references DIR   # DIR: a canary set's
        references/ made beforehand (a GPU machine may have no espeak-ng)

Prints a table and writes bench/results/bench_exposure.json. Target: >= 200 utterances/s.
"""
from __future__ import annotations

import argparse
import os
import platform
import string
import sys
import tempfile
import time
from pathlib import Path

import torch
import yaml

from espnet_pcc.fileio import atomic_write_json

TOKENS = ["<blank>", "<unk>", "<space>"] + list(string.ascii_lowercase) + ["'", "<sos/eos>"]


def demo_config(tmp: Path) -> Path:
    from espnet2.tasks.asr import ASRTask

    tok = tmp / "tokens.txt"
    tok.write_text("\n".join(TOKENS) + "\n")
    args = ASRTask.get_parser().parse_args([
        "--token_type", "char", "--token_list", str(tok),
        "--frontend_conf", "{n_fft: 512, hop_length: 160, n_mels: 80}",
        "--encoder", "conformer",
        "--encoder_conf", "{output_size: 144, attention_heads: 4, linear_units: 576, "
        "num_blocks: 4, input_layer: conv2d, cnn_module_kernel: 15, macaron_style: true, "
        "rel_pos_type: latest, pos_enc_layer_type: rel_pos, "
        "selfattention_layer_type: rel_selfattn, activation_type: swish, use_cnn_module: true}",
        "--decoder", "transformer",
        "--decoder_conf", "{attention_heads: 4, linear_units: 576, num_blocks: 2}",
        "--model_conf", "{ctc_weight: 0.3, lsm_weight: 0.1}",
    ])
    conf = vars(args)
    conf["token_list"] = TOKENS
    path = tmp / "config.yaml"
    path.write_text(yaml.safe_dump(conf))
    return path


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--num_utts", type=int, default=256)
    p.add_argument("--batch_sizes", type=int, nargs="+", default=[1, 16, 32, 64])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=2, help="timed passes per batch size (best kept)")
    p.add_argument("--output", type=Path, default=Path(__file__).parent / "results" / "bench_exposure.json")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--references", type=Path,
                   help="score this Kaldi dir (wav.scp, text) instead of speaking new references")
    args = p.parse_args(argv)
    if args.references is not None and not (args.references / "wav.scp").is_file():
        p.error(f"--references {args.references}: no wav.scp there")

    from espnet_pcc.measurement import exposure as ex
    from espnet_pcc import kaldi_dir
    from espnet_pcc.measurement.canary.generate import CanaryConfig, generate
    from espnet_pcc.measurement.canary.vocab import load_vocab

    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as td:
        tmp = Path(td)
        cfg = demo_config(tmp)
        torch.manual_seed(0)
        model, margs = ex.load_asr_model(cfg, _save_untrained(cfg, tmp), device=args.device)
        nparams = sum(p.numel() for p in model.parameters())
        t = time.time()
        if args.references is None:
            generate(tmp / "can", load_vocab("wordfreq", 10000),
                     CanaryConfig(repeat_counts=(1,), canaries_per_count=1,
                                  num_references=args.num_utts, speed=1.6, seed=0),
                     nj=2, log_every=0)
        tts_s = time.time() - t
        ref = kaldi_dir.read(args.references or tmp / "can" / "references")
        items = [(u, ref.wav_scp[u], ref.text[u]) for u in ref.utt_ids][:args.num_utts]
        import soundfile as sf

        gflop = _gflop_per_utt(model, margs, items[:8])

        mean_dur = sum(sf.info(w).duration for _, w, _ in items) / len(items)
        rows = []
        for bs in args.batch_sizes:
            scorer = ex.Scorer(model, margs, device=args.device, batch_size=bs)
            scorer.score(items[: min(len(items), 2 * bs)], log_every=0)  # warm-up
            best, best_cpu = float("inf"), float("inf")
            for _ in range(args.repeats):
                t, c = time.time(), time.process_time()
                scorer.score(items, log_every=0)
                best = min(best, time.time() - t)
                best_cpu = min(best_cpu, time.process_time() - c)
            # Wall time on a shared CPU depends on what else runs; CPU seconds are recorded too
            # (also inflated under contention: cache thrashing, OpenMP spin-waits).
            rows.append({"batch_size": bs, "seconds": best, "utts_per_second": len(items) / best,
                         "cpu_seconds": best_cpu,
                         "utts_per_cpu_second": len(items) / best_cpu})
            print(f"batch {bs:3d}: {len(items) / best:7.1f} utt/s ({best:.2f} s for {len(items)}), "
                  f"{len(items) / best_cpu:.1f} utt per CPU-second", file=sys.stderr)
    result = {
        "benchmark": "exposure scoring (attention NLL), references per second",
        "model": "conformer 144-d x4 + transformer decoder x2, char, untrained",
        "num_params": nparams,
        "num_utts": len(items),
        "mean_duration_s": mean_dur,
        "threads": args.threads,
        "device": torch.cuda.get_device_name() if args.device == "cuda" else "cpu",
        "torch": torch.__version__,
        "cpu": platform.processor() or platform.machine(),
        "tts_seconds": tts_s,
        # other processes on a shared CPU slow this down a lot: record how busy it was
        "loadavg_before": load_before,
        "loadavg_after": os.getloadavg(),
        "target_utts_per_second": 200,
        "gflop_per_utt": gflop,
        "rows": rows,
    }
    print(f"model: {nparams / 1e6:.2f} M params; {len(items)} references, mean {mean_dur:.2f} s "
          f"audio; torch threads {args.threads}")
    print(f"{'batch':>5}  {'utt/s':>8}  {'seconds':>8}  {'cpu_s':>8}  {'utt/cpu_s':>10}")
    for r in rows:
        print(f"{r['batch_size']:>5}  {r['utts_per_second']:8.1f}  {r['seconds']:8.2f}  "
              f"{r['cpu_seconds']:8.2f}  {r['utts_per_cpu_second']:10.1f}")
    best = max(r["utts_per_second"] for r in rows)
    print(f"forward cost: {gflop:.2f} GFLOP per utterance (200 utt/s needs {0.2 * gflop * 1000:.0f} "
          f"GFLOP/s)")
    print(f"load average before/after: {load_before[0]:.2f} / {os.getloadavg()[0]:.2f} "
          f"on {os.cpu_count()} CPUs")
    print(f"best {best:.1f} utt/s (wall clock; target >= 200: {'met' if best >= 200 else 'MISSED'})")
    atomic_write_json(args.output, result)
    print(f"wrote {args.output}")


def _gflop_per_utt(model, margs, items) -> float:
    """FLOPs of one scoring forward (encoder + attention decoder) per utterance."""
    from torch.utils.flop_counter import FlopCounterMode

    from espnet_pcc.measurement import exposure as ex

    scorer = ex.Scorer(model, margs, device=next(model.parameters()).device.type,
                       batch_size=len(items))
    speech = [ex.read_mono(w) for _, w, _ in items]
    toks = [scorer.tokenize(u, t) for u, _, t in items]
    with torch.inference_mode(), FlopCounterMode(display=False) as fc:
        scorer._batch_nll(speech, toks)
    return fc.get_total_flops() / len(items) / 1e9


def _save_untrained(cfg: Path, tmp: Path) -> Path:
    import argparse as ap

    from espnet2.tasks.asr import ASRTask

    model = ASRTask.build_model(ap.Namespace(**yaml.safe_load(cfg.read_text())))
    torch.save(model.state_dict(), tmp / "model.pth")
    return tmp / "model.pth"


if __name__ == "__main__":
    main()
