"""What the diffusers backends share: importing torch/diffusers only when chosen, the device,
the seed, the step callback (progress each step; cancel by raising out of the denoising loop),
and tensors <-> Pillow images. Nothing here runs in this project's CI (no GPU, no model hub):
see worker/README.md for model ids, versions and GPU memory."""

import importlib
import inspect
import sys

from .. import images
from ..errors import BackendUnavailable, JobError

MAX_STEPS = 150


def require(backend, modules=("torch", "diffusers", "transformers")):
    """The modules, imported; BackendUnavailable naming what is missing and how to get it."""
    out = []
    for name in modules:
        try:
            out.append(importlib.import_module(name))
        except ImportError as e:
            raise BackendUnavailable(
                "the %s backend needs %s, which cannot be imported here (%s); install "
                "torch, diffusers and transformers with a CUDA GPU (worker/README.md, "
                "'Diffusion backends')" % (backend, name, e))
    return out


def add_repo(backend, options, package):
    """Puts the research repository checkout (option repo_dir=PATH) on sys.path and imports
    `package` from it (their pipelines are not part of diffusers)."""
    repo = options.get("repo_dir")
    if not repo:
        raise BackendUnavailable("the %s backend needs --option repo_dir=PATH (a checkout of "
                                 "its research repository, see worker/README.md)" % backend)
    if repo not in sys.path:
        sys.path.insert(0, repo)
    try:
        return importlib.import_module(package)
    except ImportError as e:
        raise BackendUnavailable("the %s backend cannot import %s from %s: %s"
                                 % (backend, package, repo, e))


def device_and_dtype(torch, options):
    dev = options.get("device") or ("cuda" if torch.cuda.is_available() else "cpu")
    dtype = torch.float16 if dev.startswith("cuda") and options.get("dtype", "fp16") == "fp16" \
        else torch.float32
    return dev, dtype


def params(req, default_steps=50, default_guidance=7.5):
    """(steps, guidance, width, height), validated; sizes must be multiples of 8 (latents)."""
    steps = req.steps or default_steps
    if steps < 1 or steps > MAX_STEPS:
        raise JobError("steps %d is out of range [1, %d]" % (steps, MAX_STEPS))
    guidance = req.guidance if req.guidance else default_guidance
    if guidance < 0 or guidance > 30:
        raise JobError("guidance %g is out of range [0, 30]" % guidance)
    w, h = images.out_size(req)
    if w % 8 or h % 8:
        raise JobError("width and height must be multiples of 8 (got %dx%d)" % (w, h))
    return steps, guidance, w, h


def generator(torch, device, seed):
    return torch.Generator(device="cpu" if device == "mps" else device).manual_seed(int(seed))


def step_kwargs(pipe, ctx, total):
    """Keyword arguments that make `pipe` report progress each step and stop at a cancel: the
    new callback_on_step_end when the pipeline has it (diffusers >= 0.22), else the older
    callback/callback_steps. ctx.check() raises JobCancelled inside the callback, which leaves
    the denoising loop at once."""
    names = inspect.signature(pipe.__call__).parameters
    if "callback_on_step_end" in names:
        def on_end(p, i, t, kw):
            ctx.progress(i + 1, total)
            ctx.check()
            return kw
        return {"callback_on_step_end": on_end}
    if "callback" in names:
        def cb(i, t, latents):
            ctx.progress(i + 1, total)
            ctx.check()
        return {"callback": cb, "callback_steps": 1}
    return {}


def to_tensor(torch, im, device, dtype):
    """A Pillow RGB image as a 1x3xHxW tensor in [-1, 1]."""
    import numpy as np
    a = np.asarray(im.convert("RGB"), dtype=np.float32) / 127.5 - 1.0
    return torch.from_numpy(a).permute(2, 0, 1).unsqueeze(0).to(device, dtype)


def mask_tensor(torch, m, device, dtype):
    """A Pillow L mask as 1x1xHxW in {0, 1} (1 = the region to generate)."""
    import numpy as np
    a = (np.asarray(m.convert("L"), dtype=np.float32) >= 128).astype(np.float32)
    return torch.from_numpy(a)[None, None].to(device, dtype)


def region_mask(req, category, person_size, w, h):
    """The inpainting mask as a Pillow L image: the request's, else the composite backend's
    keypoint / default box."""
    from . import composite
    Image = images.Image
    if req.mask:
        return images.decode(req.mask, "mask", "L").resize((w, h), Image.NEAREST)
    box = composite.keypoint_box(req.pose, category, person_size, (w, h)) \
        or composite.default_box(category, w, h)
    m = Image.new("L", (w, h), 0)
    m.paste(255, box)
    return m


def pose_map(torch, req, person_size, w, h, device, dtype, radius=5):
    """18 channels (COCO-18 keypoints), each a filled square of `radius` around its point, as
    LaDI-VTON's and MGD's datasets build them; channels of missing points stay 0."""
    pm = torch.zeros((1, 18, h, w), device=device, dtype=dtype)
    pts = list(req.pose)
    frac = pts and all(0 <= p.x <= 1 and 0 <= p.y <= 1 for p in pts)
    for i, p in enumerate(pts[:18]):
        if p.x == 0 and p.y == 0:
            continue
        x = int(p.x * w) if frac else int(p.x * w / person_size[0])
        y = int(p.y * h) if frac else int(p.y * h / person_size[1])
        pm[0, i, max(0, y - radius):y + radius + 1, max(0, x - radius):x + radius + 1] = 1
    return pm


def png_of(pil_image):
    return images.encode_png(pil_image.convert("RGB"))
