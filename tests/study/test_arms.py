"""The arms: a model's arm and seed from its tag, and an arm's one colour in every plot."""
from espnet_pcc.study import arms
from espnet_pcc.study.arms import ARM_COLORS, arm_colors, arm_of, seed_styles
from shared_helpers import CONF


def test_the_arm_is_the_configs_last_field_and_the_seed_the_tags_suffix():
    assert arm_of("asr_train_asr_shuffled_pcc_seed3") == ("pcc", 3)
    assert arm_of("asr_train_asr_demo_paperbase") == ("paperbase", 0)


def test_an_arm_has_its_colour_whatever_else_is_drawn():
    assert arm_colors(["pcc"]) == {"pcc": ARM_COLORS["pcc"]}
    assert arm_colors(["control", "pcc", "baseline"])["pcc"] == ARM_COLORS["pcc"]
    # an arm not listed gets a colour no listed arm has, the next one in order
    drawn = arm_colors(["newarm", "pcc", "other"])
    assert drawn["newarm"] != drawn["other"]
    assert not {drawn["newarm"], drawn["other"]} & set(ARM_COLORS.values())
    assert len(set(ARM_COLORS.values())) == len(ARM_COLORS)


def test_every_arm_of_the_demo_and_the_study_has_its_colour():
    configs = [*CONF.glob("train_asr_demo_*.yaml"), *CONF.glob("train_asr_shuffled_*.yaml")]
    found = {arm_of("asr_" + c.stem)[0] for c in configs}
    assert {"baseline", "control", "pcc"} <= found
    assert found <= set(ARM_COLORS), found - set(ARM_COLORS)


def test_seeds_are_styled_in_ascending_order():
    assert seed_styles([4, 0, 4]) == {0: arms.SEED_STYLES[0], 4: arms.SEED_STYLES[1]}
