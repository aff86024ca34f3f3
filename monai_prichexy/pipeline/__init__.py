"""The data steward's batch pipeline: a folder tree of radiographs in, anonymized copies out.

One concept per module:

* :mod:`.naming`: keyed pseudonyms for file and folder names, output paths;
* :mod:`.walk`: lazy, loop-safe walk of the input tree;
* :mod:`.atomic`: atomic writes (temp file in the destination folder, fsync, ``os.replace``);
* :mod:`.anonymizer`: one input file -> one anonymized output (DICOM and the other formats);
* :mod:`.manifest`: the append-only, crash-safe manifest that makes a run resumable;
* :mod:`.batch`: the walker + resume + worker pool + progress bar;
* :mod:`.distributed`: the same batch with the files anonymized on a Dask cluster (optional extra ``dask``);
* :mod:`.datalist`: the same walk and keyed names as a MONAI datalist (the bundle's ``inference.json``);
* :mod:`.report`: privacy/utility report comparing originals with anonymized copies.

The names below are imported on first use, so that the modules that need neither pydicom nor
the DICOM code (:mod:`monai_prichexy.formats`, :mod:`.manifest`, :mod:`monai_prichexy.bundle_files`) can be imported on their
own, e.g. by the MONAI Label app (:mod:`monai_prichexy.label`), whose environment has
pydicom 2.
"""

from __future__ import annotations

from ..lazy import lazy_exports

_LAZY = {
    "Deformer": ".anonymizer",
    "FileAnonymizer": ".anonymizer",
    "FileOutcome": ".anonymizer",
    "BatchSummary": ".batch",
    "anonymize_tree": ".batch",
    "check_in_out": ".batch",
    "FORMATS": "..formats",
    "UnsupportedImageError": "..formats",
    "detect_format": "..formats",
    "read_image": "..formats",
    "write_image": "..formats",
    "Manifest": ".manifest",
    "ManifestError": ".manifest",
    "check_output_folder": ".manifest",
    "Pseudonymizer": ".naming",
    "walk_files": ".walk",
    "WeightsNotFoundError": "..bundle_files",
    "default_weights_path": "..bundle_files",
    "resolve_weights": "..bundle_files",
    "measured_statement": "..bundle_files",
}

__all__ = sorted(_LAZY)


__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals())
