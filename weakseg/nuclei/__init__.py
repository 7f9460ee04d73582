"""Nuclear instance segmentation: HoVer-Net targets and post-processing, a classical baseline."""

from .classical import classical_nuclei, hematoxylin
from .hover import hv_instances, hv_maps, instance_types, sobel

__all__ = ["classical_nuclei", "hematoxylin", "hv_instances", "hv_maps", "instance_types", "sobel"]
