"""The MONAI Label app: annotators see only anonymized radiographs.

::

    originals (PRICHEXY_LABEL_INPUT, never read by the server itself)
      -> monai-prichexy anonymize, main environment, subprocess (.cache.sync_cache), resumable
      -> cache = MONAI Label's studies folder (AnonymizedDatastore, images read-only)
      -> REST API: /datastore, /datastore/image (anonymized files only), labels by pseudonym
    + infer task "anonymize" (DeformAnonymize in-process) for images sent to the server

Start it with ``python -m monai_prichexy.label start`` (see :mod:`.launcher`), which sets the
environment variables of :mod:`.settings` and runs ``monailabel start_server``; the app
directory that MONAI Label loads contains only a ``main.py`` importing :class:`PriCheXyLabelApp`.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from monailabel.config import settings as monailabel_settings
from monailabel.interfaces.app import MONAILabelApp
from monailabel.interfaces.exception import MONAILabelError, MONAILabelException

from .. import __version__
from .cache import CacheError, sync_cache
from .datastore import AnonymizedDatastore
from .infer import AnonymizeTask
from .settings import ENV, LabelSettings

__all__ = ["PriCheXyLabelApp"]

logger = logging.getLogger(__name__)


class _UploadNameFilter(logging.Filter):
    """Drops MONAI Label's log line of an image upload, which quotes the uploaded file's name
    (``Image: ...; File: UploadFile(filename=...)``); the upload itself is refused."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (isinstance(record.msg, str) and record.msg.startswith("Image: ") and "File: " in record.msg)


def _quiet_upload_names() -> None:
    log = logging.getLogger("monailabel.endpoints.datastore")
    if not any(isinstance(f, _UploadNameFilter) for f in log.filters):
        log.addFilter(_UploadNameFilter())


class PriCheXyLabelApp(MONAILabelApp):
    """MONAI Label app serving the anonymized cache of a folder of radiographs.

    ``studies`` is the cache folder (the CLI's output folder; created when missing). With
    ``PRICHEXY_LABEL_INPUT`` set, the originals are anonymized into it before the server
    starts; without it the folder is served as it is.
    """

    def __init__(self, app_dir: str, studies: str, conf: dict) -> None:
        self.prichexy = LabelSettings.from_environ()
        # MONAI Label re-creates the app in subprocesses for some tasks: they serve the cache as
        # it is, and the input folder is kept in this process only
        os.environ.pop(ENV["input"], None)
        _quiet_upload_names()
        super().__init__(
            app_dir=app_dir,
            studies=studies,
            conf=conf,
            name="PriCheXy-Net anonymized chest radiographs",
            description="Radiographs anonymized by monai-prichexy (PS3.15 Annex E header, keyed UIDs and names, "
            "PriCheXy-Net pixel deformation); infer task 'anonymize' deforms images sent to the server",
            version=__version__,
        )

    def init_datastore(self):
        if self.studies.startswith(("http://", "https://")):
            raise MONAILabelException(MONAILabelError.APP_INIT_ERROR, "the studies must be the local cache folder")
        cache = Path(self.studies)
        cache.mkdir(parents=True, exist_ok=True)
        if self.prichexy.input is not None:
            try:
                sync_cache(self.prichexy, cache)
            except CacheError as err:
                logger.error("%s", err)
                raise MONAILabelException(MONAILabelError.APP_INIT_ERROR, str(err)) from None
        else:
            logger.info("no input folder: serving the studies folder as it is (it must be anonymized already)")
        return AnonymizedDatastore(self.studies, auto_reload=monailabel_settings.MONAI_LABEL_DATASTORE_AUTO_RELOAD)

    def init_infers(self):
        return {
            "anonymize": AnonymizeTask(
                self.prichexy.weights, expected_sha256=self.prichexy.weights_sha256, device=self.prichexy.device
            )
        }

    def init_trainers(self):
        return {}

    def init_scoring_methods(self):
        return {}

    def init_batch_infer(self):
        def refuse(*args, **kwargs):
            raise MONAILabelException(
                MONAILabelError.INVALID_INPUT, "batch inference is not offered: the datastore is anonymized already"
            )

        return refuse

    def infer(self, request, datastore=None):
        request = dict(request)
        request["save_label"] = False  # a deformed image is no label
        return super().infer(request, datastore)
