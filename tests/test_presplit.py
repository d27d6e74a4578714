"""The input read once for a cluster run: each seed in its shard's file, as the input gave it
(its id included), every shard a file, and a resume reuses the split."""

from __future__ import annotations

from gristmill.cluster.split import SPLIT_FILE, seeds_file, split_input
from gristmill.config.load import validate_config
from gristmill.seeds import SeedSource
from gristmill.seeds.presplit import PresplitSource
from gristmill.seeds.shards import shard_of
from tests.conftest import pipeline_config


def test_each_seed_lands_once_in_its_shards_file_and_a_resume_reuses_the_split(tmp_path):
    config = validate_config(pipeline_config("http://127.0.0.1:9/v1", tmp_path, seeds=50))
    dirs = [tmp_path / "shards" / f"{k:05d}" for k in range(4)]
    done = split_input(config, dirs, fresh=True)
    whole = [(s.id, s.text, s.source, s.kind) for s in SeedSource(config.seeds)]
    parts = [[(s.id, s.text, s.source, s.kind) for s in PresplitSource(seeds_file(d))]
             for d in dirs]
    assert sorted(seed for part in parts for seed in part) == sorted(whole)
    for k, part in enumerate(parts):
        assert all(shard_of(text, 4) == k for _, text, _, _ in part)
        assert part == [seed for seed in whole if shard_of(seed[1], 4) == k]  # input order
    assert done["seeds"] == len(whole) == 50 and done["per_shard"] == [len(p) for p in parts]
    assert all(seeds_file(d).exists() for d in dirs)
    stamp = seeds_file(dirs[0]).stat().st_mtime_ns
    assert split_input(config, dirs, fresh=False) == done  # a resume: read nothing again
    assert seeds_file(dirs[0]).stat().st_mtime_ns == stamp
    assert (tmp_path / "shards" / SPLIT_FILE).exists()


def test_a_split_cut_short_is_done_again_from_the_start(tmp_path):
    config = validate_config(pipeline_config("http://127.0.0.1:9/v1", tmp_path, seeds=20))
    dirs = [tmp_path / "shards" / f"{k:05d}" for k in range(2)]
    first = split_input(config, dirs, fresh=True)
    (tmp_path / "shards" / SPLIT_FILE).unlink()  # as if the driver died before the marker
    again = split_input(config, dirs, fresh=False)
    assert again == first  # rewritten, not appended to
    assert sum(1 for d in dirs for _ in PresplitSource(seeds_file(d))) == 20


def test_a_shard_has_one_live_writer(tmp_path):
    """The lease: a second worker on a shard held by a live one fails instead of writing
    beside it; once the holder lets go (or dies: the kernel drops the lock) it may start."""
    import pytest

    from gristmill.cluster.lease import Lease, ShardBusy

    with Lease(tmp_path / "shard"):
        with pytest.raises(ShardBusy, match="held by another live worker"):
            with Lease(tmp_path / "shard"):
                pass
    with Lease(tmp_path / "shard"):  # free again
        assert (tmp_path / "shard" / "lease").read_text().split()[1].isdigit()


def test_a_backends_limits_are_divided_among_the_shards_at_once():
    from gristmill.cluster.limits import divided

    config = {"backends": {"a": {"max_in_flight": 10, "rpm": 100, "tpm": None},
                           "b": {"max_in_flight": 1}}, "name": "x"}
    parts = divided(config, 3)
    assert parts["backends"]["a"] == {"max_in_flight": 4, "rpm": 34, "tpm": None}
    assert parts["backends"]["b"]["max_in_flight"] == 1  # rounded up: every shard works
    assert config["backends"]["a"]["max_in_flight"] == 10 and parts["name"] == "x"
