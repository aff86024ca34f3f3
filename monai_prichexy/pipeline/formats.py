"""The image formats of the batch pipeline: :mod:`monai_prichexy.formats` (moved there so that the
data layer's :class:`~monai_prichexy.data.RadiographReader` can use it without importing the pipeline)."""

from ..formats import (  # noqa: F401
    FORMATS,
    SUFFIXES,
    ImageFile,
    UnsupportedImageError,
    detect_format,
    encode_image,
    read_image,
    write_image,
)

__all__ = ["FORMATS", "SUFFIXES", "ImageFile", "UnsupportedImageError", "detect_format", "encode_image", "read_image", "write_image"]
