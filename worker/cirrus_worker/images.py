"""Image decode, validation and PNG encode (Pillow, Debian's python3-pil).

Every image a job carries is checked here before any backend touches it: bytes within
MAX_IMAGE_BYTES, a format Pillow decodes, dimensions within MAX_SIDE. Failures raise JobError
with the field's name, so the job ends with a reason a user can act on.
"""

import io

from .errors import JobError

MAX_IMAGE_BYTES = 32 << 20
MAX_SIDE = 4096
MIN_OUT_SIDE, MAX_OUT_SIDE = 16, 2048
DEFAULT_WIDTH, DEFAULT_HEIGHT = 384, 512

try:
    from PIL import Image
except ImportError:  # pragma: no cover - python3-pil is in `make deps`
    Image = None


def _need_pil():
    if Image is None:
        raise JobError("this worker has no image library (install python3-pil)", -11)


def decode(data, field, mode="RGB"):
    """`data` (PNG, JPEG, WebP, ...) as a Pillow image in `mode`; JobError when it is not one."""
    _need_pil()
    if len(data) > MAX_IMAGE_BYTES:
        raise JobError("%s: %d bytes exceeds the %d-byte limit" % (field, len(data), MAX_IMAGE_BYTES))
    try:
        im = Image.open(io.BytesIO(data))
        w, h = im.size  # read from the header, before any pixel is decoded
    except Exception as e:
        raise JobError("%s: cannot decode the image (%s)" % (field, _short(e)))
    if w > MAX_SIDE or h > MAX_SIDE or w < 1 or h < 1:
        raise JobError("%s: %dx%d exceeds the %dx%d limit" % (field, w, h, MAX_SIDE, MAX_SIDE))
    try:
        im.load()
        return im.convert(mode)
    except Exception as e:
        raise JobError("%s: cannot decode the image (%s)" % (field, _short(e)))


def _short(e):
    s = str(e) or type(e).__name__
    return s if len(s) < 160 else s[:157] + "..."


def out_size(req):
    """The output (width, height): the request's or 384x512; JobError when out of range."""
    w = req.width or DEFAULT_WIDTH
    h = req.height or DEFAULT_HEIGHT
    for name, v in (("width", w), ("height", h)):
        if v < MIN_OUT_SIDE or v > MAX_OUT_SIDE:
            raise JobError("%s %d is out of range [%d, %d]" % (name, v, MIN_OUT_SIDE, MAX_OUT_SIDE))
    return w, h


def encode_png(im):
    """`im` as PNG bytes (fixed settings, so equal pixels give equal bytes)."""
    buf = io.BytesIO()
    im.save(buf, format="PNG", compress_level=6, optimize=False)
    return buf.getvalue()
