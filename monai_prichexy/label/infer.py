"""The MONAI Label infer task ``anonymize``: :func:`.deform.anonymize_file` in the server's process.

See :mod:`.deform` for what it returns. Needs MONAI Label (the ``label`` environment).
"""

from __future__ import annotations

import logging
import os
import tempfile
from typing import Any

from monailabel.interfaces.exception import MONAILabelError, MONAILabelException
from monailabel.interfaces.tasks.infer_v2 import InferTask, InferType

from ..transforms import DeformAnonymize
from .deform import anonymize_file

__all__ = ["AnonymizeTask"]

logger = logging.getLogger(__name__)


class AnonymizeTask(InferTask):
    """MONAI Label infer task ``anonymize`` (see the module docstring).

    Args:
        weights: generator checkpoint (the CLI's default: ``bundle/models/model.pt``).
        expected_sha256: checked before the checkpoint is loaded (default: the bundle's metadata).
        device: torch device.
    """

    def __init__(self, weights: str | os.PathLike | None = None, expected_sha256: str | None = None, device: str = "cpu"):
        from ..bundle_files import resolve_weights
        from ..weights import sha256_file

        path, expected = resolve_weights(weights, expected_sha256)
        self.transform = DeformAnonymize(path, expected_sha256=expected, device=device)
        self.weights_sha256 = sha256_file(path)
        mu = float(self.transform.network.mu)
        super().__init__(
            type=InferType.OTHERS,
            labels=None,
            dimension=2,
            description=(
                f"PriCheXy-Net anonymization of the pixels (mu={mu:g}): returns the deformed image in the "
                "input's format, shape, dtype and range; headers are not changed"
            ),
            config={},
        )
        self._info = {"mu": mu, "weights_sha256": self.weights_sha256,
                      "working_size": list(self.transform.network.working_size or [])}

    def info(self) -> dict[str, Any]:
        return {**super().info(), "prichexy": dict(self._info)}

    def is_valid(self) -> bool:
        return True

    def __call__(self, request) -> tuple[str, dict]:
        try:  # the endpoint deletes the result file once it is sent
            result, info = anonymize_file(self.transform, request["image"], tempfile.gettempdir())
        except ValueError as err:
            raise MONAILabelException(MONAILabelError.INVALID_INPUT, f"anonymize: {err}") from None
        logger.info("anonymize: %s %s %s in [%s, %s]", info["format"], info["shape"], info["dtype"], info["min"], info["max"])
        return os.fspath(result), {**info, **self._info}
