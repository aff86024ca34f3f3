"""The data steward's batch pipeline: a folder tree of radiographs in, anonymized copies out.

One concept per module:

* :mod:`.naming`: keyed pseudonyms for file and folder names, output paths;
* :mod:`.walk`: lazy, loop-safe walk of the input tree;
* :mod:`.atomic`: atomic writes (temp file in the destination folder, fsync, ``os.replace``);
* :mod:`.formats`: PNG / JPEG / TIFF / NIfTI reading and writing (same format out, no metadata);
* :mod:`.anonymizer`: one input file -> one anonymized output (DICOM and the other formats);
* :mod:`.manifest`: the append-only, crash-safe manifest that makes a run resumable;
* :mod:`.batch`: the walker + resume + worker pool + progress bar;
* :mod:`.weights`: the default generator weights of the bundle and their checksum;
* :mod:`.report`: privacy/utility report comparing originals with anonymized copies.
"""

from .anonymizer import Deformer, FileAnonymizer, FileOutcome
from .batch import BatchSummary, anonymize_tree, check_in_out
from .formats import FORMATS, UnsupportedImageError, detect_format, read_image, write_image
from .manifest import Manifest, ManifestError
from .naming import Pseudonymizer
from .walk import walk_files
from .weights import WeightsNotFoundError, default_weights_path, resolve_weights

__all__ = [
    "BatchSummary",
    "Deformer",
    "FORMATS",
    "FileAnonymizer",
    "FileOutcome",
    "Manifest",
    "ManifestError",
    "Pseudonymizer",
    "UnsupportedImageError",
    "WeightsNotFoundError",
    "anonymize_tree",
    "check_in_out",
    "default_weights_path",
    "detect_format",
    "read_image",
    "resolve_weights",
    "walk_files",
    "write_image",
]
