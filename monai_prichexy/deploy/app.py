"""The MONAI Deploy application: anonymize every CR/DX/DR radiograph of a DICOM folder.

::

    DICOMDataLoaderOperator -> DICOMSeriesSelectorOperator (Modality CR/DX/DR, all series)
        -> RadiographAnonymizeOperator (PriCheXy-Net + Annex E header)
        -> DeidentifiedDICOMWriterOperator (<SOPInstanceUID>.dcm, atomic)

Run it as MONAI Deploy apps are run::

    python -m monai_prichexy.deploy -i INPUT_DIR -o OUTPUT_DIR -m MODEL [--mu 0.01] [--key-file KEY]

or with ``HOLOSCAN_INPUT_PATH``, ``HOLOSCAN_OUTPUT_PATH`` and ``HOLOSCAN_MODEL_PATH`` set
(arguments win over the variables). Our own options are described in :mod:`.options`.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from monai.deploy.conditions import CountCondition
from monai.deploy.core import AppContext, Application
from monai.deploy.operators.dicom_data_loader_operator import DICOMDataLoaderOperator
from monai.deploy.operators.dicom_series_selector_operator import DICOMSeriesSelectorOperator

from ..logsafe import PhiSafeFilter, no_phi_in_logs
from .operators import DeidentifiedDICOMWriterOperator, RadiographAnonymizeOperator
from .options import RADIOGRAPH_SELECTION_RULES, DeployOptions, split_argv

__all__ = ["PriCheXyAnonymizerApp", "main"]

logger = logging.getLogger(__name__)

class PriCheXyAnonymizerApp(Application):
    """PriCheXy-Net anonymization of the CR/DX/DR series of a DICOM folder.

    Args:
        argv: the full command line (program name first); default ``sys.argv``. Our options
            (:class:`~.options.DeployOptions`) are taken out, the rest goes to the SDK.
        options: use these options instead of reading them from ``argv`` / the environment.
    """

    name = "prichexy_anonymizer"
    description = "PriCheXy-Net pixel deformation and PS3.15 Annex E header de-identification of radiographs"

    def __init__(self, *args, argv: Sequence[str] | None = None, options: DeployOptions | None = None, **kwargs):
        self._full_argv = list(sys.argv if argv is None else argv)
        self._options = options
        super().__init__(*args, **kwargs)

    def compose(self) -> None:
        options, sdk_argv = split_argv(self._full_argv)
        options = self._options or options
        # No PHI in the log (monai_prichexy.logsafe): the SDK logs its arguments (the input path)
        # and header values of the inputs. The filter on the root logger itself catches the SDK's
        # `logging.info(...)` while it sets up logging; then every handler gets it.
        early = PhiSafeFilter()
        logging.getLogger().addFilter(early)
        context: AppContext = Application.init_app_context(sdk_argv)  # also configures logging
        no_phi_in_logs()
        input_path = Path(context.input_path)
        output_path = Path(context.output_path)
        logger.info("input IN (its path is not logged), output %s, model %s", output_path, context.model_path)

        loader = DICOMDataLoaderOperator(self, CountCondition(self, 1), input_folder=input_path, name="study_loader_op")
        selector = DICOMSeriesSelectorOperator(
            self, rules=RADIOGRAPH_SELECTION_RULES, all_matched=True, name="radiograph_selector_op"
        )
        anonymizer = RadiographAnonymizeOperator(
            self,
            model_path=context.model_path,
            mu=options.mu,
            key_file=options.key_file,
            dates=options.dates,
            device=options.device,
            expected_sha256=options.weights_sha256,
            output_folder=output_path,
            input_folder=input_path,
            name="prichexy_anonymize_op",
        )
        writer = DeidentifiedDICOMWriterOperator(self, output_folder=output_path, name="deid_dicom_writer_op")

        self.add_flow(loader, selector, {("dicom_study_list", "dicom_study_list")})
        self.add_flow(selector, anonymizer, {("study_selected_series_list", "study_selected_series_list")})
        self.add_flow(anonymizer, writer, {("anonymized", "anonymized")})


def main(argv: Sequence[str] | None = None) -> int:
    """Run the application; returns 0 (exceptions propagate, so failures exit non-zero)."""
    PriCheXyAnonymizerApp(argv=argv).run()
    return 0
