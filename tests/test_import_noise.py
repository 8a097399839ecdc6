"""What espnet2's optional dependencies print at import is left out of a CLI's output, with
one note; anything else they print is kept."""
import importlib
import sys
import textwrap

import pytest

from espnet_pcc.import_noise import SHOW_ENV, hidden, split

FLASH = "Failed to import Flash Attention, using ESPnet default: No module named 'flash_attn'\n"
# nltk.download's lines offline (g2p_en at import, espnet 202511), wrapped as nltk wraps them
NLTK = ("[nltk_data] Error loading averaged_perceptron_tagger_eng: <urlopen\n"
        "[nltk_data]     error [Errno -3] Temporary failure in name\n"
        "[nltk_data]     resolution>\n")

# A stand-in for espnet2's import: the noise the way the dependencies print it (a print to
# stdout as espnet 202511 does, a write to file descriptor 2 as C code or a stream bound
# earlier would, nltk's downloader that binds sys.stderr as a default argument), and lines
# that are not noise.
NOISY_MODULE = f'''
import os, sys
print({FLASH.rstrip()!r})
os.write(2, {NLTK.encode()!r})
def download_error(message, print_error_to=sys.stderr):
    print(message, file=print_error_to)
print("a line the module means")
sys.stderr.write("UserWarning: a real warning\\n")
os.write(2, b"Failed to import Flash Attention, using ESPnet default: undefined symbol: x\\n")
'''


@pytest.fixture
def noisy_module(tmp_path, monkeypatch):
    (tmp_path / "noisy_dependency.py").write_text(NOISY_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "noisy_dependency"
    sys.modules.pop("noisy_dependency", None)


def test_split_leaves_out_known_lines_and_counts_them():
    text, counts = split("keep me\n" + FLASH + NLTK + "keep me too\n")
    assert text == "keep me\nkeep me too\n"
    assert [(n.pattern[:8], c) for n, c in counts.items()] == [("Failed t", 1), (r"\[nltk_d", 3)]
    # flash-attn installed but failing to load is a problem worth seeing
    broken = "Failed to import Flash Attention, using ESPnet default: No module named " \
             "'flash_attn_2_cuda'\n"
    assert split(broken) == (broken, {})


def test_hidden_import_keeps_what_is_not_noise_and_notes_the_rest(noisy_module, capfd):
    with hidden("some_cli"):
        module = importlib.import_module(noisy_module)
    out, err = capfd.readouterr()
    assert out == "a line the module means\n"
    err_lines = err.splitlines()
    assert "UserWarning: a real warning" in err_lines
    assert "Failed to import Flash Attention, using ESPnet default: undefined symbol: x" \
        in err_lines
    assert not [line for line in err_lines if line.startswith("[nltk_data]")]
    assert err_lines[-1] == (
        "some_cli: note: not shown, from importing espnet2: flash-attn is not installed "
        "(optional, ESPnet's own attention is used); g2p_en's NLTK data download at import "
        f"(only g2p_en phoneme tokenizers use it). {SHOW_ENV}=show shows the 4 lines.")
    # a stream bound during the import writes where it should afterwards
    module.download_error("[nltk_data] Error loading cmudict at run time")
    assert capfd.readouterr().err == "[nltk_data] Error loading cmudict at run time\n"
    print("after")
    assert capfd.readouterr().out == "after\n"


def test_a_failing_import_shows_everything_it_printed(tmp_path, monkeypatch, capfd):
    (tmp_path / "failing_dependency.py").write_text(textwrap.dedent(f"""
        print({FLASH.rstrip()!r})
        raise ImportError("no torchaudio")
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ImportError, match="no torchaudio"):
        with hidden("some_cli"):
            importlib.import_module("failing_dependency")
    out, err = capfd.readouterr()
    assert out == FLASH and "note" not in err


def test_the_environment_variable_shows_the_noise(noisy_module, monkeypatch, capfd):
    monkeypatch.setenv(SHOW_ENV, "show")
    with hidden("some_cli"):
        importlib.import_module(noisy_module)
    out, err = capfd.readouterr()
    assert out == FLASH + "a line the module means\n"
    assert err.startswith(NLTK) and "note" not in err

