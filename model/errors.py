"""The errors model/ raises for input it cannot use: a stable `code` and a plain `message`, never an HTTP status.

Codes are snake_case strings that the API returns as is and that clients branch on; the service maps each one
to its HTTP status in app/errors.py (`ERRORS`), and the CLIs print the message, which names the file.
"""

from __future__ import annotations

from typing import ClassVar


class ImageError(ValueError):
    """An image (or other accepted file) that cannot be used; each subclass has its own `code`."""

    code: ClassVar[str]

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def naming(self, source: object) -> ImageError:
        """The same error with its message prefixed by the file it came from (for CLIs and training)."""
        return type(self)(f"{source}: {self.message}")


class EmptyImageError(ImageError):
    """A zero-byte file, or an image whose header declares no pixels."""

    code = "empty_image"


class UnreadableImageError(ImageError):
    """Truncated or damaged data, a missing page or frame, NaN or infinite pixels: a known format that cannot
    be decoded (also a file that starts like one but whose header is broken)."""

    code = "unreadable_image"


class UnsupportedImageError(ImageError):
    code = "unsupported_image_format"


class UnsupportedTransferSyntaxError(UnsupportedImageError):
    """A DICOM file whose pixel data is compressed in a way the installed decoders cannot read."""

    code = "unsupported_transfer_syntax"


class ImageTooLargeError(ImageError):
    """More pixels than the limit, refused from the header before any pixel is decoded, so a decompression
    bomb costs nothing."""

    code = "image_too_large"


class TooManyFramesError(ImageError):
    """A multi-frame file over the frame or loop pixel limit (model/cine.py), refused from its header."""

    code = "too_many_frames"
