"""Camera frames for visual chat and the active monitor, through OpenCV (``opencv-python-headless``).

``--camera 0`` opens a camera by number, ``--camera FILE`` reads a video file (looped) or an image (the
same picture every time), so the camera path is scriptable without a device. :meth:`Camera.frames`
yields JPEG bytes at most ``fps`` times a second (the server's ``video_in.max_fps``), at most
``max_width`` pixels wide. OpenCV reads block, so they run in a worker thread.
"""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from aria.errors import InvalidInput

__all__ = ["Camera"]

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})


def _cv2() -> Any:
    try:
        return importlib.import_module("cv2")
    except ImportError as exc:
        raise InvalidInput(
            "the camera needs OpenCV: pip install 'aria-assistant[talk]' (opencv-python-headless)"
        ) from exc


class Camera:
    """A camera, a video file or an image as a source of JPEG frames."""

    def __init__(self, spec: str, *, max_width: int = 640, quality: int = 80) -> None:
        self.cv2 = _cv2()
        self.spec = spec
        self.max_width = max_width
        self.quality = quality
        self.sent = 0
        self._image: Any = None
        self._capture: Any = None
        path = Path(spec)
        if spec.isdigit():
            self._capture = self.cv2.VideoCapture(int(spec))
            if not self._capture.isOpened():
                raise InvalidInput(f"camera {spec} cannot be opened (is it connected? try --camera 0)")
        elif not path.is_file():
            raise InvalidInput(f"--camera {spec}: no such file and not a camera number")
        elif path.suffix.lower() in IMAGE_SUFFIXES:
            self._image = self.cv2.imread(str(path))
            if self._image is None:
                raise InvalidInput(f"--camera {spec}: OpenCV cannot read this image")
        else:
            self._capture = self.cv2.VideoCapture(str(path))
            ok, _ = self._capture.read() if self._capture.isOpened() else (False, None)
            if not ok:
                raise InvalidInput(f"--camera {spec}: OpenCV cannot read frames from this video")
            self._capture.set(self.cv2.CAP_PROP_POS_FRAMES, 0)
        self.looping = self._capture is not None and not spec.isdigit()

    def read_jpeg(self) -> bytes | None:
        """The next frame as JPEG (blocking), or None when the camera gave nothing."""
        frame = self._image
        if self._capture is not None:
            ok, frame = self._capture.read()
            if not ok and self.looping:  # the end of a video file: start again
                self._capture.set(self.cv2.CAP_PROP_POS_FRAMES, 0)
                ok, frame = self._capture.read()
            if not ok:
                return None
        height, width = frame.shape[:2]
        if width > self.max_width:
            frame = self.cv2.resize(frame, (self.max_width, round(height * self.max_width / width)))
        ok, encoded = self.cv2.imencode(".jpg", frame, [self.cv2.IMWRITE_JPEG_QUALITY, self.quality])
        return bytes(encoded.tobytes()) if ok else None

    async def frames(self, fps: float) -> AsyncIterator[bytes]:
        loop = asyncio.get_running_loop()
        period = 1.0 / max(0.1, fps)
        next_at = loop.time()
        while True:
            jpeg = await asyncio.to_thread(self.read_jpeg)
            if jpeg is not None:
                self.sent += 1
                yield jpeg
            next_at = max(next_at + period, loop.time())
            await asyncio.sleep(next_at - loop.time())

    def close(self) -> None:
        if self._capture is not None:
            self._capture.release()
