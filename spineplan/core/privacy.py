"""Patient identity: which DICOM attributes carry it, and removing it from exports.

Nothing spineplan writes carries identity unless the user asks for it (``--identify``, the
GUI's identity option). Plans and cases keep it only in their ``identity`` block; DICOM
exports are anonymised by :func:`anonymise_dataset` unless identity is asked for.
"""

from __future__ import annotations

__all__ = ["DICOM_IDENTITY_ATTRIBUTES", "anonymise_dataset", "without_identity"]

#: DICOM attributes that identify a patient, a visit or the people and place around it.
DICOM_IDENTITY_ATTRIBUTES = (
    "PatientName", "PatientID", "PatientBirthDate", "PatientBirthTime", "OtherPatientIDs",
    "OtherPatientNames", "OtherPatientIDsSequence", "PatientAddress", "PatientTelephoneNumbers",
    "PatientMotherBirthName", "MilitaryRank", "EthnicGroup", "PatientComments",
    "IssuerOfPatientID", "AccessionNumber", "ReferringPhysicianName",
    "ReferringPhysicianAddress", "PerformingPhysicianName", "NameOfPhysiciansReadingStudy",
    "OperatorsName", "PhysiciansOfRecord", "RequestingPhysician", "InstitutionName",
    "InstitutionAddress", "InstitutionalDepartmentName", "StationName", "StudyDescription",
    "SeriesDescription", "StudyID", "RequestAttributesSequence",
)


def anonymise_dataset(ds, *, keep_series_description: str | None = None) -> None:
    """Empty every identity attribute of ``ds`` in place (Type 2 attributes stay, empty).

    ``keep_series_description`` is written as the SeriesDescription afterwards (an export's
    own description, e.g. "spineplan spine labels", which identifies no one).
    """
    for name in DICOM_IDENTITY_ATTRIBUTES:
        if name not in ds:
            continue
        if name.endswith("Sequence"):
            del ds[name]
        else:
            ds[name].value = ""
    for elem in ds:  # nested items too (e.g. ContributingEquipmentSequence's InstitutionName)
        if elem.VR == "SQ":
            for item in elem.value:
                anonymise_dataset(item)
    if keep_series_description is not None:
        ds.SeriesDescription = keep_series_description


def without_identity(plan: dict) -> dict:
    """A copy of a plan/case dict without its ``identity`` block and series description."""
    out = {k: v for k, v in plan.items() if k != "identity"}
    if isinstance(out.get("source"), dict):
        out["source"] = {k: v for k, v in out["source"].items() if k != "description"}
    if isinstance(out.get("plan"), dict):
        out["plan"] = without_identity(out["plan"])
    return out
