"""Dataset adapters (read the datasets' native formats) and the offline demo builder."""

from ._trials import Trials
from .coco import read_coco_captions
from .demo import DEMO_VERSION, demo_is_current, make_demo_nsd
from .nsd import (
    NSDLayout,
    iter_nsd_stimuli,
    load_nsd,
    read_expdesign,
    read_nsd_captions,
    read_nsd_stim_info,
    read_nsd_stimuli,
)

__all__ = [
    "DEMO_VERSION",
    "NSDLayout",
    "Trials",
    "demo_is_current",
    "iter_nsd_stimuli",
    "load_nsd",
    "make_demo_nsd",
    "read_coco_captions",
    "read_expdesign",
    "read_nsd_captions",
    "read_nsd_stim_info",
    "read_nsd_stimuli",
]
