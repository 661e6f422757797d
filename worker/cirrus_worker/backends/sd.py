"""sd-inpaint and sd-text2image: Stable Diffusion through diffusers' stock pipelines.

sd-inpaint (kind edit): StableDiffusionInpaintPipeline, default model
stabilityai/stable-diffusion-2-inpainting; the region is the mask, else the category's
keypoint / default box; the prompt is the request's text.
sd-text2image (kind text2image): StableDiffusionPipeline, default model
stabilityai/stable-diffusion-2-1-base.
Options: model=ID or path, device=cuda|cpu, dtype=fp16|fp32.
"""

from . import Backend
from . import _diffusers as D
from .. import images
from ..errors import JobError


class _Sd(Backend):
    pipeline_class = ""
    default_model = ""

    def load(self):
        self.torch, diffusers, _ = D.require(self.name)
        self.device, self.dtype = D.device_and_dtype(self.torch, self.options)
        cls = getattr(diffusers, self.pipeline_class)
        model = self.options.get("model", self.default_model)
        self.pipe = cls.from_pretrained(model, torch_dtype=self.dtype).to(self.device)
        self.pipe.set_progress_bar_config(disable=True)

    def _common(self, req, ctx):
        if not req.text:
            raise JobError("text (the prompt) is required for %s" % self.name)
        steps, guidance, w, h = D.params(req)
        kw = dict(prompt=req.text, num_inference_steps=steps, guidance_scale=guidance,
                  width=w, height=h, generator=D.generator(self.torch, self.device, req.seed))
        kw.update(D.step_kwargs(self.pipe, ctx, steps))
        return kw, w, h


class SdInpaintBackend(_Sd):
    name = "sd-inpaint"
    kinds = ("edit",)
    pipeline_class = "StableDiffusionInpaintPipeline"
    default_model = "stabilityai/stable-diffusion-2-inpainting"

    def run(self, req, ctx):
        kw, w, h = self._common(req, ctx)
        if not req.person_image:
            raise JobError("person_image is required for edit")
        person = images.decode(req.person_image, "person_image")
        mask = D.region_mask(req, req.category or "upper_body", person.size, w, h)
        ctx.check()
        out = self.pipe(image=person.resize((w, h)), mask_image=mask, **kw).images[0]
        return D.png_of(out)


class SdText2ImageBackend(_Sd):
    name = "sd-text2image"
    kinds = ("text2image",)
    pipeline_class = "StableDiffusionPipeline"
    default_model = "stabilityai/stable-diffusion-2-1-base"

    def run(self, req, ctx):
        kw, _, _ = self._common(req, ctx)
        ctx.check()
        return D.png_of(self.pipe(**kw).images[0])
