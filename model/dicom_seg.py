"""Masks as a DICOM Segmentation object (highdicom) that belongs to the study of the DICOM it was made from.

A SEG is read by PACS and viewers only beside its source: it must carry the source's patient and study
identity and reference the source instance (and, for a cine loop, each source frame). So the source's header
(never its pixels) is kept for this one output: the patient and study module attributes highdicom copies into
any derived object, the source's Study, Series and SOP Instance UIDs, and its SOP Class. docs/api.md lists
them. Every other tag stays behind.

highdicom encodes a single source frame, and a multi-frame source that has a Frame of Reference. A cine loop
of ultrasound has none (its frames are not positioned in a patient coordinate system), which highdicom does
not encode yet (highdicom issue #284), so a loop's SEG is built from the SEG of its first frame: one segment,
one SEG frame per source frame (empty ones included), each frame referencing its source frame in its
Derivation Image Sequence and indexed by segment and temporal position, as the standard lets a
Segmentation without a Frame of Reference do.
"""

from __future__ import annotations

import copy
import io
from collections.abc import Sequence

import highdicom as hd
import numpy as np
import pydicom
import pydicom.uid
from pydicom.datadict import tag_for_keyword
from pydicom.sr.codedict import codes

from model.errors import UnreadableImageError

#: Type 2 attributes (present, possibly empty) highdicom copies from the source into every derived object; a
#: scanner export may leave some out, and an empty value is what the standard asks for then.
PATIENT_AND_STUDY = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "StudyDate",
    "StudyTime",
    "StudyID",
    "AccessionNumber",
    "ReferringPhysicianName",
)
#: Type 1 identity a SEG cannot be made without: it must point at a real study, series and instance.
SOURCE_IDENTITY = ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "SOPClassUID")
SEGMENT_LABEL = "brachial plexus"
#: A loop is handed to highdicom as one frame of this class (see the module's docstring).
SINGLE_FRAME_STAND_IN = pydicom.uid.UltrasoundImageStorage
MANUFACTURER = "nerve-seg (research use only)"


def check_source(source: pydicom.Dataset) -> None:
    """Refuse a source a SEG could not reference, naming the attribute it lacks."""
    missing = [keyword for keyword in SOURCE_IDENTITY if not source.get(keyword)]
    if missing:
        raise UnreadableImageError(
            f"the DICOM has no {', '.join(missing)}: a DICOM SEG must reference its source's study, series and instance"
        )


def _first_frame_header(source: pydicom.Dataset) -> pydicom.Dataset:
    """The source's header as highdicom takes it: type 2 attributes present and, for a loop, presented as one
    single-frame image of the stand-in class (the references get the real class back in `_as_loop`)."""
    header = copy.deepcopy(source)
    for keyword in PATIENT_AND_STUDY:
        if keyword not in header:
            setattr(header, keyword, "")
    if "NumberOfFrames" in header:
        del header.NumberOfFrames
        header.SOPClassUID = SINGLE_FRAME_STAND_IN
    return header


def _referencing(dataset: pydicom.Dataset, sop_class: str) -> None:
    """Every ReferencedSOPClassUID naming the stand-in, anywhere in `dataset`, names `sop_class` again."""
    for element in dataset.iterall():
        if element.keyword == "ReferencedSOPClassUID" and element.value == SINGLE_FRAME_STAND_IN:
            element.value = sop_class


def _description(name: str, version: str) -> hd.seg.SegmentDescription:
    algorithm = hd.AlgorithmIdentificationSequence(
        name=name, version=version, family=codes.cid7162.ArtificialIntelligence
    )
    return hd.seg.SegmentDescription(
        segment_number=1,
        segment_label=SEGMENT_LABEL,
        segmented_property_category=codes.SCT.AnatomicalStructure,
        segmented_property_type=codes.SCT.BrachialPlexus,
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
        algorithm_identification=algorithm,
    )


def _single_frame_seg(header: pydicom.Dataset, mask: np.ndarray, name: str, version: str) -> hd.seg.Segmentation:
    return hd.seg.Segmentation(
        source_images=[header],
        pixel_array=mask.astype(bool),
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=[_description(name, version)],
        series_instance_uid=hd.UID(),
        series_number=1,
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer=MANUFACTURER,
        manufacturer_model_name=name,
        software_versions=version,
        device_serial_number="none",
        series_description=f"{SEGMENT_LABEL} ({name} {version})",
        omit_empty_frames=False,
    )


def _as_loop(seg: hd.seg.Segmentation, masks: Sequence[np.ndarray], sop_class: str) -> pydicom.Dataset:
    """Extend a one-frame SEG to one frame per source frame, indexed by segment and temporal position."""
    _referencing(seg, sop_class)
    template = seg.PerFrameFunctionalGroupsSequence[0]
    groups = []
    for number in range(1, len(masks) + 1):
        group = copy.deepcopy(template)
        for derivation in group.DerivationImageSequence:
            for source in derivation.SourceImageSequence:
                source.ReferencedFrameNumber = number
        group.FrameContentSequence[0].TemporalPositionIndex = number
        group.FrameContentSequence[0].DimensionIndexValues = [1, number]
        groups.append(group)
    seg.PerFrameFunctionalGroupsSequence = groups
    temporal = pydicom.Dataset()
    temporal.DimensionIndexPointer = tag_for_keyword("TemporalPositionIndex")
    temporal.FunctionalGroupPointer = tag_for_keyword("FrameContentSequence")
    temporal.DimensionOrganizationUID = seg.DimensionIndexSequence[0].DimensionOrganizationUID
    temporal.DimensionDescriptionLabel = "Temporal Position"
    seg.DimensionIndexSequence.append(temporal)
    seg.NumberOfFrames = len(masks)
    # BINARY segmentations pack one bit a pixel across frame boundaries, little-endian bit order.
    bits = np.packbits(np.stack([m.astype(bool) for m in masks]).ravel(), bitorder="little")
    seg.PixelData = bits.tobytes() + (b"\0" if len(bits) % 2 else b"")
    return seg


def encode_segmentation(source: pydicom.Dataset, masks: Sequence[np.ndarray], name: str, version: str) -> bytes:
    """A DICOM SEG (Part 10 bytes) of `masks`, one per source frame in order, referencing `source` (its header)."""
    check_source(source)
    seg = _single_frame_seg(_first_frame_header(source), masks[0], name, version)
    if len(masks) > 1:
        seg = _as_loop(seg, masks, source.SOPClassUID)
    if "FrameOfReferenceUID" not in seg:
        # The General Image module asks for it (empty allowed) when no patient coordinate system places the
        # frames; highdicom leaves it out.
        seg.PatientOrientation = source.get("PatientOrientation", "")
    buffer = io.BytesIO()
    seg.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()
