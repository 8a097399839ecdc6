"""espnet_pcc.measurement.canary.vocab: words of another language than English."""
def test_another_language_keeps_its_diacritics_and_needs_a_latin_vowel():
    from espnet_pcc.measurement.canary.vocab import clean_words

    words = ["Vítejte", "MĚSTĚ", "vlk", "krk", "ůl", "C3PO", "don't", "sníh'", "žluťoučký"]
    assert clean_words(words, language="cs") == ["don't", "městě", "vítejte", "žluťoučký"]
    assert clean_words(words) == ["don't"]  # English: [a-z] only


def test_load_vocab_of_a_kaldi_text_in_another_language(tmp_path):
    from espnet_pcc.measurement.canary.vocab import load_vocab

    text = tmp_path / "text"
    text.write_text("u1 VÍTEJTE V NAŠEM MĚSTĚ\nu2 DOBŘE DÍKY\n", encoding="utf-8")
    assert load_vocab(text, language="cs") == sorted(["díky", "dobře", "městě", "našem", "vítejte"])
