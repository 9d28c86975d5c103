"""Dataset adapters (read the datasets' native formats) and the offline demo builder."""

from ._trials import Trials
from .bold5000 import BOLD5000_ROIS, BOLD5000Layout, bold5000_stimulus_source, load_bold5000
from .coco import read_coco_captions
from .demo import DEMO_VERSION, demo_is_current, make_demo_nsd
from .fetch import fetch_dataset, verify_dataset
from .god import (
    BData,
    god_stimulus_name,
    load_god,
    read_bdata,
    read_god_image_features,
    read_god_stimulus_table,
)
from .haxby import (
    HAXBY_CATEGORIES,
    load_haxby,
    load_haxby_openfmri,
    read_haxby_labels,
    read_haxby_openfmri_labels,
)
from .masc import list_masc_recordings, load_masc, masc_word_segments, read_masc_events
from .moabb_mi import load_moabb_motor_imagery
from .nsd import (
    BRAIN_CORRELATION_ROIS,
    NSD_ROIS,
    NSDLayout,
    iter_nsd_stimuli,
    load_nsd,
    nsd_roi_masks,
    read_expdesign,
    read_nsd_captions,
    read_nsd_ncsnr,
    read_nsd_stim_info,
    read_nsd_stimuli,
)
from .stimuli import (
    STIMULUS_FORMATS,
    image_files_fingerprint,
    locate_stimulus_images,
    read_stimulus_images,
    stimulus_format,
)
from .synthetic import MultiSubject, make_multisubject
from .synthetic_meeg import make_synthetic_meeg
from .things_eeg2 import load_things_eeg2, load_things_eeg2_raw, read_things_eeg2_images
from .things_fmri import THINGS_FMRI_FORMS, THINGSfMRILayout, load_things_fmri
from .things_meg import MEGRun, load_things_meg, read_things_meg_events

__all__ = [
    "make_synthetic_meeg",
    "MultiSubject",
    "make_multisubject",
    "BOLD5000_ROIS",
    "BOLD5000Layout",
    "load_bold5000",
    "bold5000_stimulus_source",
    "THINGS_FMRI_FORMS",
    "THINGSfMRILayout",
    "load_things_fmri",
    "BData",
    "HAXBY_CATEGORIES",
    "god_stimulus_name",
    "load_god",
    "load_haxby",
    "load_haxby_openfmri",
    "read_bdata",
    "read_god_image_features",
    "read_god_stimulus_table",
    "read_haxby_labels",
    "read_haxby_openfmri_labels",
    "BRAIN_CORRELATION_ROIS",
    "DEMO_VERSION",
    "NSD_ROIS",
    "NSDLayout",
    "Trials",
    "demo_is_current",
    "fetch_dataset",
    "iter_nsd_stimuli",
    "load_nsd",
    "make_demo_nsd",
    "nsd_roi_masks",
    "read_coco_captions",
    "read_expdesign",
    "read_nsd_captions",
    "read_nsd_ncsnr",
    "read_nsd_stim_info",
    "read_nsd_stimuli",
    "verify_dataset",
    "STIMULUS_FORMATS",
    "image_files_fingerprint",
    "locate_stimulus_images",
    "read_stimulus_images",
    "stimulus_format",
    "MEGRun",
    "list_masc_recordings",
    "load_masc",
    "load_moabb_motor_imagery",
    "load_things_eeg2",
    "load_things_eeg2_raw",
    "load_things_meg",
    "masc_word_segments",
    "read_masc_events",
    "read_things_eeg2_images",
    "read_things_meg_events",
]
