"""espnet_pcc.recipe.fillets: the Fish Fillets NG corpus from Debian's packages, on a tiny
fixture in the packages' layout (dialogs_cs.lua lines, oggs made with sox)."""
import json
import os
import shutil
import subprocess
import sys

import pytest
import soundfile

from espnet_pcc import kaldi_dir
from espnet_pcc.bin import make_fillets_corpus
from espnet_pcc.recipe import fillets, librispeech

pytestmark = pytest.mark.needs_tts  # sox makes the fixture's ogg files

LEVELS = {
    "city": '''
dialogId("vit-hs-vitejteA", "font_statue", "Welcome to the most beautiful city.")
dialogStr("Vítejte v nejkrásnějším městě pod sluncem.")

dialogId("vit-m-ahoj", "font_small", "Hi.")
dialogStr("Ahoj, jak se máš?")

dialogId("vit-v-dobre", "font_big", "Fine.")
dialogStr("Dobře – díky!")
''',
    "gods": '''
-- a comment
dialogId("b2-voda1", "font_cyan", "Miss!")
dialogStr("Voda!")

dialogId("z-c-1", "", "")
dialogStr("")

dialogId("b2-m-c", "font_small", "In C:\\\\WINDOWS.")
dialogStr("V adresáři C:\\\\WINDOWS\\\\CONFIG a „uvozovky“.")
''',
    "reactor": '''
dialogId("r-v-1", "font_big", "One.")
dialogStr("Jedna dvě tři.")

dialogId("r-o-both", "font_both", "CONGRATULATIONS!!!")
dialogStr("BLAHOPŘEJEME!!!")

dialogId("r-m-2", "font_small", "No audio for this one.")
dialogStr("Tohle nemá zvuk.")
''',
    "bathroom": '''
dialogId("ko-m-1", "font_small", "Bath.")
dialogStr("Koupelna je tady.")

dialogId("ko-v-2", "font_big", "Yes.")
dialogStr("Ano, je.")
''',
}
AUDIO = {"city": ["vit-hs-vitejteA", "vit-m-ahoj", "vit-v-dobre"],
         "gods": ["b2-voda1", "z-c-1", "b2-m-c", "stray"],
         "reactor": ["r-v-1", "r-o-both"],
         "bathroom": ["ko-m-1", "ko-v-2"]}


@pytest.fixture(scope="module")
def game(tmp_path_factory):
    """An extracted-package root: usr/share/games/fillets-ng/{script,sound} of 4 levels."""
    root = tmp_path_factory.mktemp("fillets")
    base = root / fillets.GAME_DIR
    for i, (level, source) in enumerate(LEVELS.items()):
        (base / "script" / level).mkdir(parents=True)
        (base / "script" / level / "dialogs_cs.lua").write_text(source, encoding="utf-8")
        (base / "script" / level / "dialogs_en.lua").write_text("", encoding="utf-8")
        audio = base / "sound" / level / "cs"
        audio.mkdir(parents=True)
        for j, name in enumerate(AUDIO[level]):
            subprocess.run(["sox", "-n", "-r", "22050", "-c", "1", str(audio / f"{name}.ogg"),
                            "synth", f"{0.3 + 0.1 * j}", "sine", f"{300 + 40 * i}"], check=True)
    return root


def test_parse_dialogs_reads_ids_fonts_and_the_native_text():
    lines = fillets.parse_dialogs(LEVELS["gods"], "gods")
    assert [(x.dialog_id, x.font) for x in lines] == [("b2-voda1", "font_cyan"), ("z-c-1", ""),
                                                      ("b2-m-c", "font_small")]
    assert lines[2].text == "V adresáři C:\\WINDOWS\\CONFIG a „uvozovky“."
    nil = fillets.parse_dialogs('dialogId("x-1", nil)\ndialogStr("Ano.")', "l")
    assert [(x.dialog_id, x.font, x.text) for x in nil] == [("x-1", "", "Ano.")]


@pytest.mark.parametrize("font,level,speaker", [
    ("font_small", "city", "small"), ("font_big", "gods", "big"),
    ("font_parrot", "x", "parrot"), ("font_cyan", "gods", "cyan_gods"),
    ("font_lightgrey", "cabin1", "lightgrey_cabin1"), ("", "gods", "unknown_gods"),
])
def test_the_speaker_is_the_font_a_colour_font_a_character_of_its_level(font, level, speaker):
    assert fillets.speaker_of(font, level) == speaker


def test_text_is_upper_case_with_the_languages_diacritics_and_no_punctuation():
    assert fillets.normalize_text("Vítejte v nejkrásnějším městě, pod sluncem.") == \
        "VÍTEJTE V NEJKRÁSNĚJŠÍM MĚSTĚ POD SLUNCEM"
    assert fillets.normalize_text("Dobře – díky! We’ve 3x 'ok'") == "DOBŘE DÍKY WE'VE 3X OK"
    assert fillets.normalize_text("...!!!") == ""


def test_collect_keeps_transcribed_speech_and_counts_what_it_drops(game):
    utterances, dropped = fillets.collect(fillets.find_game_dir(game), "cs")
    assert sorted(u.dialog_id for u in utterances) == sorted(
        ["vit-hs-vitejteA", "vit-m-ahoj", "vit-v-dobre", "b2-voda1", "b2-m-c", "r-v-1",
         "ko-m-1", "ko-v-2"])
    assert dropped == {"audio without a line": 1, "no audio": 1, "no text (sound effect)": 1,
                       "two speakers (font_both)": 1}
    by_id = {u.dialog_id: u for u in utterances}
    assert by_id["b2-voda1"].speaker == "cyan_gods" and by_id["vit-m-ahoj"].speaker == "small"
    assert by_id["b2-m-c"].text == "V ADRESÁŘI C WINDOWS CONFIG A UVOZOVKY"


def test_the_split_is_by_level_with_about_the_shares_asked():
    utts = [fillets.Utterance(f"level{lv}", f"id{i}", "small", "A", None)
            for lv in range(30) for i in range(lv % 4 + 1)]
    split_of = fillets.split_levels(utts, dev_share=0.1, test_share=0.2, seed=3)
    assert set(split_of) == {u.level for u in utts}
    share = {s: sum(split_of[u.level] == s for u in utts) / len(utts) for s in fillets.SPLITS}
    assert 0.2 <= share["test"] < 0.2 + 4 / len(utts)
    assert 0.1 <= share["dev"] < 0.1 + 4 / len(utts)
    assert fillets.split_levels(utts, 0.1, 0.2, seed=3) == split_of
    assert fillets.split_levels(utts, 0.1, 0.2, seed=4) != split_of


def test_the_corpus_is_16k_flac_in_librispeech_layout_that_prep_reads(game, tmp_path):
    out = tmp_path / "FilletsCS"
    summary = fillets.build_corpus(fillets.find_game_dir(game), "cs", out, nj=2,
                                   dev_share=0.2, test_share=0.2)
    assert sum(s["utterances"] for s in summary["splits"].values()) == 8
    assert json.loads((out / "corpus.json").read_text())["splits"] == summary["splits"]
    index = [line.split("\t") for line in (out / "utterances.tsv").read_text().splitlines()[1:]]
    levels = {}
    for utt, split, level, *_ in index:
        assert levels.setdefault(level, split) == split  # no level in two splits
    for split in fillets.SPLITS:
        if not summary["splits"][split]["utterances"]:
            continue
        data = tmp_path / "data" / split
        librispeech.prepare(out, [split], data)
        kd = kaldi_dir.read(data)
        assert len(kd) == summary["splits"][split]["utterances"]
        for utt, path in kd.wav_scp.items():
            info = soundfile.info(path)
            assert info.samplerate == 16000 and info.channels == 1
            assert kd.utt2spk[utt] == utt.rsplit("-", 1)[0]  # <speaker>-fillets
    # The same settings keep it; others are an error naming the dir.
    assert fillets.build_corpus(fillets.find_game_dir(game), "cs", out, dev_share=0.2,
                                test_share=0.2) == summary
    with pytest.raises(fillets.FilletsError, match="holds a corpus made otherwise"):
        fillets.build_corpus(fillets.find_game_dir(game), "cs", out, seed=9)


def run_cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "espnet_pcc.bin.make_fillets_corpus", *args],
                          capture_output=True, text=True, env=env)


def error_lines(result):
    return [line for line in result.stderr.splitlines() if "make_fillets_corpus: error" in line]


def test_cli_errors_are_one_line_and_write_nothing(tmp_path, game):
    out = tmp_path / "out"
    result = run_cli("--corpus_dir", str(tmp_path / "nothing"), "--output_dir", str(out))
    assert result.returncode == 2 and len(error_lines(result)) == 1, result.stderr
    assert "no Fish Fillets data" in error_lines(result)[0]
    result = run_cli("--corpus_dir", str(game), "--lang", "nl", "--output_dir", str(out))
    assert result.returncode == 2 and "has no dialogs_nl.lua" in error_lines(result)[0]
    result = run_cli("--corpus_dir", str(game), "--lang", "xx", "--output_dir", str(out))
    assert result.returncode == 2 and "--lang 'xx'" in error_lines(result)[0]
    assert not out.exists()


def test_download_errors_name_the_package_and_what_to_do(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("dpkg-deb", "sox"):
        os.symlink(shutil.which(tool) or "/bin/true", bin_dir / tool)
    env = dict(os.environ, PATH=f"{bin_dir}:{os.path.dirname(sys.executable)}")
    result = run_cli("--download_dir", str(tmp_path / "debs"), "--output_dir",
                     str(tmp_path / "out"), env=env)
    assert result.returncode == 2, result.stderr
    (line,) = error_lines(result)
    assert "apt-get not found" in line and "fillets-ng-data fillets-ng-data-cs" in line
    (bin_dir / "apt-get").write_text("#!/bin/sh\necho 'E: Unable to locate package' >&2\nexit 100\n")
    (bin_dir / "apt-get").chmod(0o755)
    result = run_cli("--download_dir", str(tmp_path / "debs"), "--output_dir",
                     str(tmp_path / "out"), env=env)
    (line,) = error_lines(result)
    assert "apt-get download fillets-ng-data failed (E: Unable to locate package)" in line
    assert "--corpus_dir" in line and not (tmp_path / "out").exists()


def test_main_builds_the_corpus_from_an_extracted_copy(game, tmp_path, capsys):
    make_fillets_corpus.main(["--corpus_dir", str(game), "--output_dir", str(tmp_path / "c"),
                              "--dev_share", "0.2", "--test_share", "0.2"])
    out = capsys.readouterr().out
    assert "train:" in out and "dropped: audio without a line: 1" in out
