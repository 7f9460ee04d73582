"""MIL data: bag sources (in memory, HDF5 tiles, cached features), padded batches, augmentation."""

from .augment import dihedral
from .collate import MILBatch, pad_collate
from .dataset import BagDataset, bag_loader, epoch_plan, eval_plan, sample_instances
from .digits import make_digit_bags
from .sources import H5Bags, InMemoryBags, MILSource, as_source, resolve_bag_paths
from .toy import write_toy_bags

__all__ = [
    "BagDataset",
    "H5Bags",
    "InMemoryBags",
    "MILBatch",
    "MILSource",
    "as_source",
    "bag_loader",
    "dihedral",
    "epoch_plan",
    "eval_plan",
    "make_digit_bags",
    "pad_collate",
    "resolve_bag_paths",
    "sample_instances",
    "write_toy_bags",
]
