"""CT-MRI fusion: rigid registration of an MRI to a CT (no Qt, no VTK).

``transform``: the one CT -> MRI LPS transform (:class:`RigidTransform`), its JSON form for
the case file and its ITK ``.tfm`` file. ``rigid``: the registration (global Mattes MI, then
local around a motor unit), its typed result and :func:`mri_on_ct`. ``fusion``: the fusion
state of a case (an evented model) and its undoable commands.
"""

from .rigid import (FusionFlag, RegistrationError, FusionFlagKind, RegistrationResult, RegistrationSettings,
                    labels_dice_on_ct, mri_on_ct, register_mri_to_ct, unit_box_lps, unit_points_lps)
from .transform import RigidTransform, read_tfm, write_tfm
from .fusion import (Fusion, TransformCommand, nudge_command, registration_command, reset_command,
                     transform_from_record, validate_fusion_record)

__all__ = ["RegistrationError", "RigidTransform", "read_tfm", "write_tfm", "RegistrationSettings", "RegistrationResult",
           "FusionFlag", "FusionFlagKind", "register_mri_to_ct", "mri_on_ct", "labels_dice_on_ct",
           "unit_box_lps", "unit_points_lps", "Fusion", "TransformCommand", "nudge_command",
           "registration_command", "reset_command", "transform_from_record", "validate_fusion_record"]
