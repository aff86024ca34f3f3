"""The MONAI Label datastore of the app: the anonymized cache, images read-only.

A :class:`~monailabel.datastore.local.LocalDatastore` on the cache folder (the output folder of
``monai-prichexy anonymize``, see :mod:`.cache`): image ids are the keyed file pseudonyms,
labels go to ``CACHE/labels/<tag>/<pseudonym>.<ext>`` as usual. Images cannot be added or
removed through the REST API: every image the server hands out must have come through the
anonymizer, so an upload (``PUT /datastore/image``) or deletion is refused with 403; add
originals to the input folder and restart the server instead (the cache resumes).
"""

from __future__ import annotations

from fastapi import HTTPException
from monailabel.datastore.local import LocalDatastore

__all__ = ["AnonymizedDatastore", "IMAGE_EXTENSIONS"]

#: the CLI's output suffixes (monai_prichexy.formats.SUFFIXES)
IMAGE_EXTENSIONS = ("*.dcm", "*.png", "*.jpg", "*.tif", "*.nii", "*.nii.gz")


class AnonymizedDatastore(LocalDatastore):
    """Local datastore whose images are only those of the anonymized cache."""

    def __init__(self, datastore_path: str, auto_reload: bool = True) -> None:
        super().__init__(datastore_path, extensions=list(IMAGE_EXTENSIONS), auto_reload=auto_reload)

    def add_image(self, image_id, image_filename, image_info):
        raise HTTPException(
            status_code=403,
            detail="this server serves only images anonymized by monai-prichexy: put originals in its input folder "
            "and restart it",
        )

    def remove_image(self, image_id):
        raise HTTPException(status_code=403, detail="images of the anonymized cache cannot be removed through the API")
