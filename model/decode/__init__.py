"""Decoding: every accepted file (image, DICOM, clip) to float32 grayscale frames in [0, 1] at their own size.

`formats.py` is the one table of accepted formats (extensions, MIME types, magic bytes); `frames.py` is the
entry point that picks a decoder by the magic bytes (`images.py`, `dicom.py`, `video.py`); `limits.py`
holds the pixel limit every decoder checks from the header. Resizing and normalisation for the network
come after, in model/preprocessing.py.
"""
