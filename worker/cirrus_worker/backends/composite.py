"""composite: a deterministic CPU baseline, no model.

Pastes the garment image into the person image's region: the mask given, else a box around the
category's pose keypoints (COCO-18 order, as LaDI-VTON and MGD use), else a default box per
category. The person is resized to the output size (default 384x512); the garment is resized to
the region's bounding box. The paste is done in `steps` horizontal bands, one per step, so that
progress and cancel behave like a diffusion loop; the output does not depend on `steps`.

Kinds: tryon (person + garment), edit (person + sketch, or a flat colour derived from the text,
pasted the same way), text2image (a gradient whose colours derive from text and seed).
"""

import hashlib

from . import KINDS, Backend
from .. import images
from ..errors import JobError

CATEGORIES = ("upper_body", "lower_body", "dresses")
DEFAULT_STEPS = 8
MAX_STEPS = 1000

# COCO-18 keypoints: 1 neck, 2/5 shoulders, 3/6 elbows, 4/7 wrists, 8/11 hips, 9/12 knees,
# 10/13 ankles.
_GROUPS = {
    "upper_body": (1, 2, 3, 4, 5, 6, 7, 8, 11),
    "lower_body": (8, 9, 10, 11, 12, 13),
    "dresses": (1, 2, 5, 8, 9, 11, 12),
}
# Fractions (x0, y0, x1, y1) of the output when there is neither mask nor usable keypoints.
_DEFAULT_BOX = {
    "upper_body": (0.20, 0.18, 0.80, 0.58),
    "lower_body": (0.25, 0.50, 0.75, 0.95),
    "dresses": (0.20, 0.18, 0.80, 0.90),
}


def default_box(category, w, h):
    f = _DEFAULT_BOX[category]
    return (round(f[0] * w), round(f[1] * h), round(f[2] * w), round(f[3] * h))


def keypoint_box(pose, category, src_size, out_size):
    """The box (x0, y0, x1, y1) in output pixels around the category's keypoints, or None when
    fewer than two of them are present. Keypoints are in person-image pixels, or fractions when
    every coordinate lies in [0, 1]; a point at (0, 0) or with score < 0 is missing, and scores
    are ignored when all are 0 (a client that sends none)."""
    pts = list(pose)
    if not pts:
        return None
    use_score = any(p.score != 0 for p in pts)
    frac = all(0.0 <= p.x <= 1.0 and 0.0 <= p.y <= 1.0 for p in pts)
    sx = out_size[0] if frac else out_size[0] / src_size[0]
    sy = out_size[1] if frac else out_size[1] / src_size[1]
    chosen = []
    for i in _GROUPS[category]:
        if i >= len(pts):
            continue
        p = pts[i]
        if (p.x == 0 and p.y == 0) or (use_score and p.score <= 0):
            continue
        chosen.append((p.x * sx, p.y * sy))
    if len(chosen) < 2:
        return None
    w, h = out_size
    x0, x1 = min(c[0] for c in chosen), max(c[0] for c in chosen)
    y0, y1 = min(c[1] for c in chosen), max(c[1] for c in chosen)
    px, py = 0.10 * w, 0.04 * h
    box = (max(0, round(x0 - px)), max(0, round(y0 - py)),
           min(w, round(x1 + px)), min(h, round(y1 + py)))
    if box[2] - box[0] < 4 or box[3] - box[1] < 4:
        return None
    return box


def _colour(text, seed, salt):
    d = hashlib.sha256(("%s\0%d\0%s" % (text, seed, salt)).encode()).digest()
    return (d[0], d[1], d[2])


class CompositeBackend(Backend):
    name = "composite"
    kinds = KINDS

    def load(self):
        if images.Image is None:
            from ..errors import BackendUnavailable
            raise BackendUnavailable("the composite backend needs Pillow (Debian: python3-pil)")

    def run(self, req, ctx):
        w, h = images.out_size(req)
        steps = req.steps or DEFAULT_STEPS
        if steps > MAX_STEPS:
            raise JobError("steps %d is out of range [1, %d]" % (steps, MAX_STEPS))
        if ctx.kind == "text2image":
            return self._text2image(req, ctx, w, h, steps)
        return self._paste(req, ctx, w, h, steps)

    def _step_pause(self, ctx):
        ms = float(self.options.get("step_ms", 0) or 0)
        if ms > 0:
            ctx.sleep(ms / 1000.0)

    def _garment(self, req, ctx):
        Image = images.Image
        if ctx.kind == "tryon":
            if req.garment_image:
                return images.decode(req.garment_image, "garment_image")
            if req.garment_item_id:
                raise JobError("garment_item_id '%s' was not resolved to an image"
                               % req.garment_item_id)
            raise JobError("garment_image is required for tryon")
        if req.sketch:
            return images.decode(req.sketch, "sketch")
        return Image.new("RGB", (8, 8), _colour(req.text, req.seed, "edit"))

    def _region(self, req, category, src_size, w, h):
        """(box, mask image or None) of the region to paste into, in output pixels."""
        Image = images.Image
        if req.mask:
            m = images.decode(req.mask, "mask", "L").resize((w, h), Image.NEAREST)
            m = m.point(lambda v: 255 if v >= 128 else 0)
            box = m.getbbox()
            if box is None:
                raise JobError("mask: no pixel is set (the region to fill is empty)")
            return box, m
        box = keypoint_box(req.pose, category, src_size, (w, h)) or default_box(category, w, h)
        return box, None

    def _paste(self, req, ctx, w, h, steps):
        Image = images.Image
        category = req.category or "upper_body"
        if category not in CATEGORIES:
            raise JobError("category '%s' is not one of %s" % (category, ", ".join(CATEGORIES)))
        if not req.person_image:
            raise JobError("person_image is required for %s" % ctx.kind)
        person = images.decode(req.person_image, "person_image")
        garment = self._garment(req, ctx)
        ctx.check()
        box, mask = self._region(req, category, person.size, w, h)
        out = person.resize((w, h), Image.BILINEAR)
        bw, bh = box[2] - box[0], box[3] - box[1]
        layer = Image.new("RGB", (w, h))
        layer.paste(garment.resize((bw, bh), Image.BILINEAR), box[:2])
        if mask is None:
            mask = Image.new("L", (w, h), 0)
            mask.paste(255, box)
        for i in range(steps):
            ctx.check()
            self._step_pause(ctx)
            y0 = box[1] + bh * i // steps
            y1 = box[1] + bh * (i + 1) // steps
            if y1 > y0:
                band = (box[0], y0, box[2], y1)
                out.paste(layer.crop(band), band[:2], mask.crop(band))
            ctx.progress(i + 1, steps)
        return images.encode_png(out)

    def _text2image(self, req, ctx, w, h, steps):
        Image = images.Image
        top, bottom = _colour(req.text, req.seed, "top"), _colour(req.text, req.seed, "bottom")
        out = Image.new("RGB", (w, h))
        for i in range(steps):
            ctx.check()
            self._step_pause(ctx)
            y0, y1 = h * i // steps, h * (i + 1) // steps
            for y in range(y0, y1):
                t = y / max(1, h - 1)
                out.paste(tuple(round(a + (b - a) * t) for a, b in zip(top, bottom)), (0, y, w, y + 1))
            ctx.progress(i + 1, steps)
        return images.encode_png(out)
