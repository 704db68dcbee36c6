"""data.augment: each operation states and checks its own options; the settings hold them all."""

from pathlib import Path

import pytest
from omegaconf import OmegaConf

from simclr.data.augment import AugmentSettings, augment_problems
from simclr.data.augment.ops import OPERATIONS


def test_operations_are_found_and_ordered_as_the_paper_applies_them():
    names = [operation.name for operation in OPERATIONS]
    assert names[:2] == ["crop", "flip"]
    assert names.index("color_jitter") < names.index("grayscale") < names.index("blur")
    assert len({operation.draw_rank for operation in OPERATIONS}) == len(OPERATIONS)


def test_settings_hold_every_option_with_its_default():
    settings = AugmentSettings(crop_scale=[0.3, 1.0], blur_prob=0.5)
    assert settings.crop_scale == (0.3, 1.0) and settings.blur_prob == 0.5
    assert settings.flip_prob == 0.5 and settings.pixel_dtype == "float32"
    assert settings == AugmentSettings(crop_scale=(0.3, 1.0), blur_prob=0.5)
    with pytest.raises(TypeError, match="unknown augmentation options \\['blurr_prob'\\]"):
        AugmentSettings(blurr_prob=0.5)
    with pytest.raises(AttributeError):
        settings.flip_prob = 0.0


@pytest.mark.parametrize(
    "augment,problem",
    [
        ({"flip_prob": 1.5}, "data.augment.flip_prob=1.5: must be a probability in [0, 1]"),
        ({"color_prob": -0.1}, "data.augment.color_prob=-0.1: must be a probability in [0, 1]"),
        ({"grayscale_prob": 2}, "data.augment.grayscale_prob=2: must be a probability in [0, 1]"),
        ({"blur_prob": "x"}, "data.augment.blur_prob='x': must be a probability in [0, 1]"),
        ({"rotation_prob": 1.5}, "data.augment.rotation_prob=1.5: must be a probability in [0, 1]"),
        (
            {"rotation_degrees": -10},
            "data.augment.rotation_degrees=-10: must be a number of degrees >= 0",
        ),
        ({"color_strength": -1.0}, "data.augment.color_strength=-1.0: must be a number >= 0"),
        ({"pixel_dtype": "int8"}, "data.augment.pixel_dtype='int8': must be float32 or uint8"),
    ],
)
def test_each_broken_option_is_one_problem_line(augment, problem):
    assert augment_problems({"flip_prob": 0.5, **augment}) == [problem]


def test_the_presets_have_no_problem():
    presets = Path(__file__).resolve().parents[3] / "configs" / "data" / "augment"
    for name in ("small", "large", "digits"):
        preset = OmegaConf.load(presets / f"{name}.yaml")
        preset.pop("defaults", None)
        assert augment_problems(preset) == []
        AugmentSettings(**OmegaConf.to_container(preset))
