"""mgd (kind edit): Multimodal Garment Designer (Baldrati et al., ICCV 2023) over diffusers.

Base: runwayml/stable-diffusion-inpainting (SD 1.5 inpainting: VAE, text encoder, tokenizer,
DDIM scheduler); the MGD UNet (28 input channels: latents, mask, masked image, pose map,
sketch) from torch.hub (aimagelab/multimodal-garment-designer, model `mgd`, weights for
`dataset` dresscode or vitonhd); the MGDPipe class from that repository
(src/mgd_pipelines/mgd_pipe.py). Conditions: text, pose keypoints (18-channel map), sketch.
512x384, steps (default 50), guidance (default 7.5), seed. Options: dataset, repo_dir,
device, dtype.
"""

import os

from . import Backend
from . import _diffusers as D
from .. import images
from ..errors import JobError

HUB = "aimagelab/multimodal-garment-designer"
BASE = "runwayml/stable-diffusion-inpainting"


class MgdBackend(Backend):
    name = "mgd"
    kinds = ("edit",)

    def load(self):
        torch, diffusers, transformers = D.require(self.name)
        self.torch = torch
        self.device, self.dtype = D.device_and_dtype(torch, self.options)
        ds = self.options.get("dataset", "dresscode")
        unet = torch.hub.load(repo_or_dir=HUB, source="github", model="mgd", dataset=ds,
                              pretrained=True)
        opts = dict(self.options)
        opts.setdefault("repo_dir", os.path.join(torch.hub.get_dir(),
                                                 "aimagelab_multimodal-garment-designer_main"))
        pipe_mod = D.add_repo(self.name, opts, "src.mgd_pipelines.mgd_pipe")
        tok = transformers.CLIPTokenizer.from_pretrained(BASE, subfolder="tokenizer")
        text = transformers.CLIPTextModel.from_pretrained(BASE, subfolder="text_encoder")
        vae = diffusers.AutoencoderKL.from_pretrained(BASE, subfolder="vae")
        sched = diffusers.DDIMScheduler.from_pretrained(BASE, subfolder="scheduler")
        for m in (unet, text, vae):
            m.to(self.device, dtype=self.dtype).eval()
        self.pipe = pipe_mod.MGDPipe(text_encoder=text, vae=vae, unet=unet, tokenizer=tok,
                                     scheduler=sched).to(self.device)

    def run(self, req, ctx):
        torch = self.torch
        steps, guidance, w, h = D.params(req)
        if (w, h) != (384, 512):
            raise JobError("mgd generates 384x512 only (got %dx%d)" % (w, h))
        if not req.person_image or not req.text:
            raise JobError("person_image and text are required for edit")
        person = images.decode(req.person_image, "person_image")
        dev, dt = self.device, self.dtype
        with torch.inference_mode():
            img = D.to_tensor(torch, person.resize((w, h)), dev, dt)
            mask = D.mask_tensor(torch, D.region_mask(req, req.category or "upper_body",
                                                      person.size, w, h), dev, dt)
            pose = D.pose_map(torch, req, person.size, w, h, dev, dt)
            if req.sketch:
                sk = images.decode(req.sketch, "sketch", "L").resize((w, h))
                sketch = D.mask_tensor(torch, sk, dev, dt)
            else:
                sketch = torch.zeros((1, 1, h, w), device=dev, dtype=dt)
            ctx.check()
            out = self.pipe(prompt=[req.text], image=img, mask_image=mask, pose_map=pose,
                            sketch=sketch, height=h, width=w, guidance_scale=guidance,
                            num_images_per_prompt=1, num_inference_steps=steps,
                            generator=D.generator(torch, dev, req.seed),
                            **D.step_kwargs(self.pipe, ctx, steps)).images[0]
        return D.png_of(out)
