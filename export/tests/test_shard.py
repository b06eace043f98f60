"""`--shard K/N` (pixforge.export.shard): the one split of every bulk job."""

import pytest

from pixforge.export import shard
from pixforge.export.errors import PixforgeError


def test_shards_cover_everything_once():
    for total in (0, 1, 7, 100):
        for count in (1, 3, 8):
            seen = [i for k in range(count) for i in shard.shard_indices(total, k, count)]
            assert seen == list(range(total))


def test_parse_shard():
    assert shard.parse_shard("2/8") == (1, 8)
    assert shard.parse_shard(None) == (0, 1)
    for bad in ("0/4", "5/4", "x", "1-4"):
        with pytest.raises(PixforgeError, match="--shard"):
            shard.parse_shard(bad)
