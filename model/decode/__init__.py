"""Decoding: every accepted file (image, DICOM, clip) to float32 grayscale frames in [0, 1] at their own size.

`formats.py` is the one table of accepted formats (extensions, MIME types, magic bytes); `frames.py` is the
entry point that picks a decoder by the magic bytes (`images.py`, `dicom.py`, `video.py`) after
`structure.py` has checked the file's structure on the raw bytes; `limits.py` holds the pixel and side limits
every decoder checks from the header; `isolated.py` runs all of it in helper processes bounded in time and
memory, as the service does. Resizing and normalisation for the network come after, in model/preprocessing.py.
"""
