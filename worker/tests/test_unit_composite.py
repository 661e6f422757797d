"""The composite backend: deterministic output, mask and keypoint regions, bad input."""

import hashlib
import io
import unittest

from PIL import Image

from cirrus_worker import images
from cirrus_worker.backends import composite
from cirrus_worker.errors import JobCancelled, JobError
from wtest import Ctx, pattern, png, request, solid

RED, BLUE = (255, 0, 0), (0, 0, 255)

# sha256 of the RGB pixels of the fixed try-on below (Pillow's BILINEAR resize, Debian 12's
# python3-pil 9.4). A change here means the baseline's output changed: check why first.
FIXED_PIXELS_SHA256 = "88ddf2fe0956e1c957577fcd74949435e213e80929032e5cc47538022d7b414a"


def run(req, kind="tryon", **opts):
    ctx = Ctx(kind)
    out = composite.CompositeBackend(opts).run(req, ctx)
    return Image.open(io.BytesIO(out)), out, ctx


class Deterministic(unittest.TestCase):
    def fixed(self, steps=0):
        return request(kind=1, person_image=pattern((300, 400), 1),
                       garment_image=pattern((120, 160), 2), category="upper_body",
                       steps=steps)

    def test_same_input_same_bytes_and_pinned_hash(self):
        im1, b1, ctx = run(self.fixed())
        _, b2, _ = run(self.fixed())
        self.assertEqual(b1, b2)
        self.assertEqual(im1.size, (384, 512))
        self.assertEqual(im1.format, "PNG")
        self.assertEqual(ctx.steps, [(i, 8) for i in range(1, 9)])
        digest = hashlib.sha256(im1.convert("RGB").tobytes()).hexdigest()
        self.assertEqual(digest, FIXED_PIXELS_SHA256)

    def test_steps_change_progress_not_pixels(self):
        a, _, ca = run(self.fixed(steps=1))
        b, _, cb = run(self.fixed(steps=13))
        self.assertEqual(a.tobytes(), b.tobytes())
        self.assertEqual(len(ca.steps), 1)
        self.assertEqual(len(cb.steps), 13)

    def test_output_size(self):
        req = self.fixed()
        req.width, req.height = 200, 100
        im, _, _ = run(req)
        self.assertEqual(im.size, (200, 100))


class Regions(unittest.TestCase):
    def test_mask_region_only(self):
        mask = Image.new("L", (384, 512), 0)
        mask.paste(255, (10, 300, 110, 500))  # a box far from every default box
        im, _, _ = run(request(kind=1, person_image=solid(RED), garment_image=solid(BLUE),
                               mask=png(mask)))
        im = im.convert("RGB")
        self.assertEqual(im.getpixel((60, 400)), BLUE)
        self.assertEqual(im.getpixel((200, 200)), RED)  # in the default upper-body box
        self.assertEqual(im.getpixel((5, 400)), RED)

    def test_mask_is_resized_and_shaped(self):
        # a half-size mask with a triangle: pixels follow its shape, not its bounding box
        mask = Image.new("L", (192, 256), 0)
        from PIL import ImageDraw
        ImageDraw.Draw(mask).polygon([(0, 0), (191, 0), (0, 255)], fill=255)
        im, _, _ = run(request(kind=1, person_image=solid(RED), garment_image=solid(BLUE),
                               mask=png(mask)))
        im = im.convert("RGB")
        self.assertEqual(im.getpixel((20, 20)), BLUE)
        self.assertEqual(im.getpixel((370, 500)), RED)
        self.assertEqual(im.getpixel((300, 400)), RED)  # inside the bbox, outside the triangle

    def test_keypoint_box(self):
        # person 192x256 (half the output): shoulders at y 60, hips at y 150, x 60..130
        pose = [(0, 0, 0)] * 18
        pose[1] = (96, 50, 1)
        pose[2], pose[5] = (60, 60, 1), (130, 60, 1)
        pose[8], pose[11] = (70, 150, 1), (120, 150, 1)
        req = request(kind=1, person_image=solid(RED), garment_image=solid(BLUE),
                      category="upper_body", pose=pose)
        box = composite.keypoint_box(req.pose, "upper_body", (192, 256), (384, 512))
        # x 120..260 +/- 38 px, y 100..300 +/- 20 px
        self.assertEqual(box, (82, 80, 298, 320))
        im, _, _ = run(req)
        im = im.convert("RGB")
        self.assertEqual(im.getpixel((190, 200)), BLUE)
        self.assertEqual(im.getpixel((190, 400)), RED)   # below the hips
        self.assertEqual(im.getpixel((40, 200)), RED)    # left of the box

    def test_keypoints_as_fractions_and_lower_body(self):
        pose = [(0, 0, 0)] * 18
        pose[8], pose[11] = (0.4, 0.5, 0.9), (0.6, 0.5, 0.9)
        pose[10], pose[13] = (0.4, 0.9, 0.9), (0.6, 0.9, 0.9)
        req = request(pose=pose)
        box = composite.keypoint_box(req.pose, "lower_body", (1, 1), (384, 512))
        self.assertEqual(box, (115, 236, 269, 481))

    def test_too_few_keypoints_default_box(self):
        pose = [(0, 0, 0)] * 18
        pose[8] = (70, 150, 1)
        req = request(kind=1, person_image=solid(RED), garment_image=solid(BLUE),
                      category="dresses", pose=pose)
        self.assertIsNone(composite.keypoint_box(req.pose, "dresses", (192, 256), (384, 512)))
        im, _, _ = run(req)
        x0, y0, x1, y1 = composite.default_box("dresses", 384, 512)
        self.assertEqual(im.convert("RGB").getpixel(((x0 + x1) // 2, (y0 + y1) // 2)), BLUE)
        self.assertEqual(im.convert("RGB").getpixel((x0 - 2, y0 - 2)), RED)

    def test_default_boxes_differ_by_category(self):
        boxes = {c: composite.default_box(c, 384, 512) for c in composite.CATEGORIES}
        self.assertEqual(len(set(boxes.values())), 3)
        self.assertLess(boxes["upper_body"][1], boxes["lower_body"][1])

    def test_edit_and_text2image(self):
        im, _, _ = run(request(kind=2, person_image=solid(RED), text="blue stripes"), "edit")
        self.assertEqual(im.size, (384, 512))
        a, _, _ = run(request(kind=3, text="a red dress", seed=7), "text2image")
        b, _, _ = run(request(kind=3, text="a red dress", seed=7), "text2image")
        c, _, _ = run(request(kind=3, text="a red dress", seed=8), "text2image")
        self.assertEqual(a.tobytes(), b.tobytes())
        self.assertNotEqual(a.tobytes(), c.tobytes())


class BadInput(unittest.TestCase):
    def fails(self, req, text, kind="tryon"):
        with self.assertRaises(JobError) as cm:
            composite.CompositeBackend().run(req, Ctx(kind))
        self.assertIn(text, str(cm.exception))
        return cm.exception

    def test_undecodable(self):
        e = self.fails(request(kind=1, person_image=b"not an image at all",
                               garment_image=solid(BLUE)), "person_image: cannot decode")
        self.assertEqual(e.code, -2)
        self.fails(request(kind=1, person_image=solid(RED), garment_image=solid(BLUE)[:60]),
                   "garment_image: cannot decode")

    def test_oversized(self):
        big = png(Image.new("L", (images.MAX_SIDE + 1, 4)))
        self.fails(request(kind=1, person_image=big, garment_image=solid(BLUE)),
                   "person_image: 4097x4 exceeds the 4096x4096 limit")
        self.fails(request(kind=1, person_image=b"\0" * (images.MAX_IMAGE_BYTES + 1),
                           garment_image=solid(BLUE)), "bytes exceeds")

    def test_missing_and_out_of_range(self):
        self.fails(request(kind=1, garment_image=solid(BLUE)), "person_image is required")
        self.fails(request(kind=1, person_image=solid(RED)), "garment_image is required")
        self.fails(request(kind=1, person_image=solid(RED), garment_item_id="sku-1"),
                   "garment_item_id 'sku-1' was not resolved")
        self.fails(request(kind=1, person_image=solid(RED), garment_image=solid(BLUE),
                           category="hats"), "category 'hats'")
        self.fails(request(kind=1, person_image=solid(RED), garment_image=solid(BLUE),
                           width=5000), "width 5000 is out of range")
        self.fails(request(kind=1, person_image=solid(RED), garment_image=solid(BLUE),
                           steps=5000), "steps 5000 is out of range")
        self.fails(request(kind=1, person_image=solid(RED), garment_image=solid(BLUE),
                           mask=png(Image.new("L", (50, 50), 0))), "mask: no pixel is set")

    def test_cancel_between_steps(self):
        ctx = Ctx("tryon", cancel_at=3)
        with self.assertRaises(JobCancelled) as cm:
            composite.CompositeBackend().run(
                request(kind=1, person_image=solid(RED), garment_image=solid(BLUE)), ctx)
        self.assertEqual(len(ctx.steps), 3)
        self.assertIn("step 3", str(cm.exception))


if __name__ == "__main__":
    unittest.main()
