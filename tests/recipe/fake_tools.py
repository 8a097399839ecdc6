"""A stand-in for the interpreter the stage script runs (``--python``): records every
``-m MODULE ARGS`` call and writes what the real tool would (random model bytes, one hypothesis
per key, small JSON files), in milliseconds. Lets the stage script's own logic (what is redone,
how jobs are dispatched, what the terminal shows) be tested without torch.

Used as ``--python "<interpreter> fake_tools.py"``; ``FAKE_RECORD`` names the file that gets one
line per call (``MODULE ARGS...``); ``FAKE_FAIL`` = a module name makes that tool fail once.
"""
import json
import os
import sys
from pathlib import Path


def opt(args, name, default=None):
    return args[args.index(name) + 1] if name in args else default


def main(argv):
    assert argv[0] == "-m", argv
    module, args = argv[1], argv[2:]
    with open(os.environ["FAKE_RECORD"], "a") as f:
        f.write(" ".join([module] + args) + "\n")
    fail = os.environ.get("FAKE_FAIL", "")
    if fail == module:
        print(f"{module}: error: failing as asked (FAKE_FAIL)", file=sys.stderr)
        return 2
    if module == "espnet_pcc.bin.asr_train":
        out = Path(opt(args, "--output_dir"))
        out.mkdir(parents=True, exist_ok=True)
        max_epoch = int(opt(args, "--max_epoch", "2"))
        (out / "config.yaml").write_text(Path(opt(args, "--config")).read_text() + "# trained\n")
        for e in range(1, max_epoch + 1):
            (out / f"{e}epoch.pth").write_bytes(os.urandom(32))  # a retrained model differs
            print(f"{e}epoch results: [train] loss=1.0, train_time=0.1 [valid] loss=2.0", flush=True)
            print(f"[progress] {out} epoch {e}/{max_epoch} loss 1.000 valid_loss 2.000 0.1 s/epoch ETA 0s",
                  file=sys.stderr, flush=True)
        (out / "valid.acc.ave.pth").write_bytes(os.urandom(32))
    elif module == "espnet_pcc.bin.decode":
        i = 0
        while "--set" in args[i:]:
            i = args.index("--set", i) + 1
            keys, out = args[i + 1], Path(args[i + 2])
            (out / "1best_recog").mkdir(parents=True, exist_ok=True)
            lines = [f"{line.split()[0]} HYP\n" for line in open(keys)]
            for name in ("text", "token", "score"):
                (out / "1best_recog" / name).write_text("".join(lines))
    elif module == "espnet_pcc.bin.score_wer":
        out = Path(opt(args, "--output_dir")) / "score_wer"
        out.mkdir(parents=True, exist_ok=True)
        (out / "result.json").write_text(json.dumps({"Err": 50.0}))
        print("WER 50.0")
    elif module == "espnet_pcc.bin.score_exposure":
        out = Path(opt(args, "--output_dir"))
        out.mkdir(parents=True, exist_ok=True)
        (out / "summary.json").write_text("{}")
    elif module == "espnet_pcc.bin.report":
        Path(opt(args, "--output_md")).write_text("|model|\n")
        print("|model|")
    elif module == "espnet2.bin.pack":
        Path(opt(args, "--outpath")).write_bytes(b"PK fake")
    else:
        print(f"fake_tools: no stand-in for {module}", file=sys.stderr)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
