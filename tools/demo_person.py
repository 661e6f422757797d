#!/usr/bin/env python3
"""Draws the demo's person: a plain figure on a light background, 384x512 (LaDI-VTON's
aspect), deterministic. It stands in for a model photo: the composite worker pastes the
garment into the category's default box of it (no pose model runs in the demo)."""
import sys

from PIL import Image, ImageDraw

W, H = 384, 512


def draw(path):
    im = Image.new("RGB", (W, H), (236, 238, 242))
    d = ImageDraw.Draw(im)
    skin, hair, clothes = (224, 182, 150), (60, 42, 30), (120, 124, 132)
    d.ellipse((162, 28, 222, 100), fill=skin)            # head
    d.pieslice((160, 24, 224, 84), 180, 360, fill=hair)  # hair
    d.rectangle((182, 96, 202, 116), fill=skin)          # neck
    d.rounded_rectangle((126, 112, 258, 300), 24, fill=clothes)  # torso
    d.rounded_rectangle((96, 118, 128, 290), 14, fill=skin)      # arms
    d.rounded_rectangle((256, 118, 288, 290), 14, fill=skin)
    d.rectangle((136, 296, 188, 490), fill=(70, 80, 110))        # legs
    d.rectangle((196, 296, 248, 490), fill=(70, 80, 110))
    d.rectangle((130, 486, 190, 500), fill=(40, 40, 40))         # shoes
    d.rectangle((194, 486, 254, 500), fill=(40, 40, 40))
    im.save(path)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: demo_person.py OUT.png")
    draw(sys.argv[1])
