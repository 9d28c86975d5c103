"""Dataset adapters (read the datasets' native formats) and the offline demo builder."""

from ._trials import Trials
from .demo import make_demo_nsd
from .nsd import NSDLayout, iter_nsd_stimuli, load_nsd, read_expdesign, read_nsd_stimuli

__all__ = [
    "NSDLayout",
    "Trials",
    "iter_nsd_stimuli",
    "load_nsd",
    "make_demo_nsd",
    "read_expdesign",
    "read_nsd_stimuli",
]
