"""Packed WebDataset shards for multi-machine training: ``dali-aug pack`` writes them
(:func:`pack`), the Loader reads them (:class:`ShardSource`, with DALI's
``fn.readers.webdataset``). The format and the promises: :mod:`dali_aug.shards._format`."""

from dali_aug.shards._format import MANIFEST, ShardSource, is_shard_folder
from dali_aug.shards._pack import PackReport, pack, parse_shard_size

__all__ = ["MANIFEST", "PackReport", "ShardSource", "is_shard_folder", "pack", "parse_shard_size"]
