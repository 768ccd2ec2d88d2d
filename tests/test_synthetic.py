from __future__ import annotations

import pytest
from PIL import Image

from ras_guard.demo import synthetic
from ras_guard.demo.synthetic import (
    CALIBRATION_SEEDS,
    DEFAULT_SIZE,
    HELD_OUT_COLOURS,
    OBJECT_KINDS,
    TEST_SEEDS,
    TRAIN_SEEDS,
    draw_object,
    draw_word,
    object_colour,
)


def test_kinds() -> None:
    benign = [k for k in OBJECT_KINDS.values() if not k.dangerous]
    dangerous = [k for k in OBJECT_KINDS.values() if k.dangerous]
    assert len(benign) >= 12 and len(dangerous) >= 6
    assert {"bomb", "gun", "grenade", "pills", "poison bottle", "knife"} <= {k.name for k in dangerous}
    assert all(name == kind.name == kind.name.lower() for name, kind in OBJECT_KINDS.items())
    assert all(k.category for k in dangerous) and not any(k.category for k in benign)
    assert OBJECT_KINDS["apple"].phrase == "an apple" and OBJECT_KINDS["bomb"].phrase == "a bomb"
    with pytest.raises(TypeError):
        OBJECT_KINDS["x"] = OBJECT_KINDS["bomb"]  # type: ignore[index]


def test_seed_ranges_are_disjoint() -> None:
    ranges = [set(r) for r in (CALIBRATION_SEEDS, TEST_SEEDS)]
    assert not ranges[0] & ranges[1]
    assert all(TRAIN_SEEDS.stop <= r.start or r.stop <= TRAIN_SEEDS.start for r in (CALIBRATION_SEEDS, TEST_SEEDS))
    assert len(TEST_SEEDS) >= 50 and len(CALIBRATION_SEEDS) >= 50


@pytest.mark.parametrize("kind", list(OBJECT_KINDS))
def test_draw_object_is_deterministic_and_varied(kind: str) -> None:
    a = draw_object(kind, seed=5)
    assert isinstance(a, Image.Image) and a.mode == "RGB" and a.size == (DEFAULT_SIZE, DEFAULT_SIZE)
    assert a.tobytes() == draw_object(kind, seed=5).tobytes()
    assert len({draw_object(kind, seed=s).tobytes() for s in range(6)}) == 6
    assert draw_object(kind, seed=5, size=96).size == (96, 96)
    assert len(set(a.getdata())) >= 2  # something is drawn on the background


def test_draw_word() -> None:
    a = draw_word("bomb", seed=1)
    assert a.size == (DEFAULT_SIZE, DEFAULT_SIZE) and a.mode == "RGB"
    assert a.tobytes() == draw_word("bomb", seed=1).tobytes()
    assert a.tobytes() != draw_word("bomb", seed=2).tobytes()
    assert a.tobytes() != draw_word("cake", seed=1).tobytes()
    assert draw_word("poison bottle", seed=3, size=128).size == (128, 128)
    with pytest.raises(ValueError):
        draw_word("   ", seed=0)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="unknown object kind"):
        draw_object("dragon", seed=0)
    with pytest.raises(ValueError):
        draw_object("cake", seed=0, size=8)
    with pytest.raises(ValueError):
        object_colour("dragon", seed=0)


def test_held_out_colours() -> None:
    assert set(HELD_OUT_COLOURS) == set(OBJECT_KINDS)
    for kind, held in HELD_OUT_COLOURS.items():
        assert held in synthetic.COLOURS
        assert all(object_colour(kind, seed=s) != held for s in range(200))
        assert all(object_colour(kind, seed=s) != held for s in CALIBRATION_SEEDS)
        assert any(object_colour(kind, seed=s) == held for s in TEST_SEEDS)
