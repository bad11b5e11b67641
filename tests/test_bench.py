"""The benchmark runs end to end and reports its figures next to the right floors (no timing asserted)."""

import json

import pytest

from stg import bench


def test_floor_of_ltx_video_at_block_19():
    floor = bench.floors(28, 19)
    assert floor["stg_over_cfg"] == pytest.approx(2.32 / 2, abs=1e-3)
    assert floor["compare_over_two_cfg"] == pytest.approx(4.32 / 4, abs=1e-3)


@pytest.mark.parametrize(
    "argv",
    [
        ["--layers", "4", "--block", "3", "--frames", "9", "--height", "32", "--width-px", "32"],
        ["--config", "ltx-video-2b", "--layers", "2", "--block", "1", "--frames", "9", "--height", "32", "--width-px", "32"],
        ["--config", "shapes", "--cache", "0.1"],
    ],
    ids=["tiny-pipeline", "ltx-2b-transformer", "shapes"],
)
def test_benchmark_prints_table_and_json(argv, capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("STG_CACHE", str(tmp_path))
    bench.main(argv + ["--steps", "3", "--repeats", "1"])
    lines = capsys.readouterr().out.strip().splitlines()
    result = json.loads(lines[-1])
    assert "over floor" in "\n".join(lines[:-1])
    runs = {"cfg", "stg", "stg_plain", "two_cfg", "compare", "compare_plain"}
    assert runs <= set(result["seconds_per_step"]) and all(v > 0 for v in result["seconds_per_step"].values())
    assert result["floors"] == bench.floors(result["depth"], result["stg_block"])
    for name, ratio in result["ratios"].items():
        assert result["over_floor"][name] == pytest.approx(ratio / result["floors"][name] - 1)
    if "--cache" in argv:  # the trained model, at its preset's size: the cached comparison beside the others
        figures = result["cache"]["0.1"]
        assert (result["frames"], result["height"], result["width"]) == (9, 32, 32)
        assert figures["over_uncached"] > 0 and 0 < figures["floor_over_uncached"] <= 1
        assert set(figures["forwards"]) == {"uncond", "cond", "perturbed"}
