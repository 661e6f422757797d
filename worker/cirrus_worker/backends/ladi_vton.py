"""ladi-vton (kind tryon): LaDI-VTON (Morelli et al., ACM MM 2023) over diffusers.

Base: stabilityai/stable-diffusion-2-inpainting (text encoder, tokenizer, DDIM scheduler; the
VAE class comes from the LaDI-VTON repository, whose decoder takes EMASC skip connections).
From the LaDI-VTON repository via torch.hub (miccunifi/ladi-vton, weights for `dataset`
dresscode or vitonhd): extended_unet (31 input channels), emasc, inversion_adapter and
warping_module (TPS + refinement). Garment features: laion/CLIP-ViT-H-14-laion2B-s32B-b79K.
512x384, steps (default 50), guidance (default 7.5), seed; progress from the step callback,
cancel by raising out of the denoising loop. Options: dataset=dresscode|vitonhd,
repo_dir=PATH (default: torch.hub's checkout), device, dtype.
"""

import os

from . import Backend
from . import _diffusers as D
from .. import images
from ..errors import JobError

HUB = "miccunifi/ladi-vton"
BASE = "stabilityai/stable-diffusion-2-inpainting"
CLIP = "laion/CLIP-ViT-H-14-laion2B-s32B-b79K"
NUM_VSTAR = 16
_CATEGORY_TEXT = {"dresses": "a dress", "upper_body": "an upper body garment",
                  "lower_body": "a lower body garment"}


class LadiVtonBackend(Backend):
    name = "ladi-vton"
    kinds = ("tryon",)

    def load(self):
        torch, diffusers, transformers = D.require(self.name)
        import torchvision  # noqa: F401 - the warping step resizes with it
        self.torch = torch
        self.device, self.dtype = D.device_and_dtype(torch, self.options)
        ds = self.options.get("dataset", "dresscode")

        def hub(model):
            return torch.hub.load(repo_or_dir=HUB, source="github", model=model, dataset=ds)
        self.unet = hub("extended_unet")
        self.emasc = hub("emasc")
        self.inversion_adapter = hub("inversion_adapter")
        self.tps, self.refinement = hub("warping_module")
        opts = dict(self.options)
        opts.setdefault("repo_dir", os.path.join(torch.hub.get_dir(), "miccunifi_ladi-vton_main"))
        pipe_mod = D.add_repo(self.name, opts, "src.vto_pipelines.tryon_pipe")
        vae_mod = D.add_repo(self.name, opts, "src.models.AutoencoderKL")
        self.encode_words = D.add_repo(self.name, opts, "src.utils.encode_text_word_embedding") \
            .encode_text_word_embedding
        self.tokenizer = transformers.CLIPTokenizer.from_pretrained(BASE, subfolder="tokenizer")
        self.text_encoder = transformers.CLIPTextModel.from_pretrained(BASE, subfolder="text_encoder")
        self.vision = transformers.CLIPVisionModelWithProjection.from_pretrained(CLIP)
        self.processor = transformers.AutoProcessor.from_pretrained(CLIP)
        vae = vae_mod.AutoencoderKL.from_pretrained(BASE, subfolder="vae")
        sched = diffusers.DDIMScheduler.from_pretrained(BASE, subfolder="scheduler")
        for m in (self.text_encoder, vae, self.emasc, self.inversion_adapter, self.unet, self.vision):
            m.to(self.device, dtype=self.dtype).eval()
        for m in (self.tps, self.refinement):  # the warping runs in fp32, as upstream
            m.to(self.device, dtype=torch.float32).eval()
        self.pipe = pipe_mod.StableDiffusionTryOnePipeline(
            text_encoder=self.text_encoder, vae=vae, tokenizer=self.tokenizer, unet=self.unet,
            scheduler=sched, emasc=self.emasc, emasc_int_layers=[1, 2, 3, 4, 5]).to(self.device)

    def run(self, req, ctx):
        torch = self.torch
        import torch.nn.functional as F
        import torchvision.transforms.functional as TF
        steps, guidance, w, h = D.params(req)
        if (w, h) != (384, 512):
            raise JobError("ladi-vton generates 384x512 only (got %dx%d)" % (w, h))
        category = req.category or "upper_body"
        if category not in _CATEGORY_TEXT:
            raise JobError("category '%s' is not one of %s" % (category, ", ".join(_CATEGORY_TEXT)))
        if not req.person_image or not req.garment_image:
            raise JobError("person_image and garment_image are required for tryon")
        person = images.decode(req.person_image, "person_image")
        garment = images.decode(req.garment_image, "garment_image").resize((w, h))
        dev, dt = self.device, self.dtype
        with torch.inference_mode():
            model_img = D.to_tensor(torch, person.resize((w, h)), dev, dt)
            cloth = D.to_tensor(torch, garment, dev, dt)
            mask = D.mask_tensor(torch, D.region_mask(req, category, person.size, w, h), dev, dt)
            pose = D.pose_map(torch, req, person.size, w, h, dev, dt)
            im_mask = model_img * (1 - mask)
            ctx.check()
            # warping module: TPS predicted at 256x192, grid upsampled, then refined
            low = [TF.resize(t, (256, 192), antialias=True).float() for t in (cloth, im_mask, pose)]
            grid = self.tps(low[0], torch.cat([low[1], low[2]], 1))[0]
            grid = TF.resize(grid.permute(0, 3, 1, 2), (h, w), antialias=True).permute(0, 2, 3, 1)
            warped = F.grid_sample(cloth.float(), grid.float(), padding_mode="border")
            warped = self.refinement(torch.cat([im_mask.float(), pose.float(), warped], 1))
            warped = warped.clamp(-1, 1).to(dt)
            ctx.check()
            # inversion adapter: garment CLIP features -> pseudo-word embeddings in the prompt
            pix = self.processor(images=TF.resize((cloth + 1) / 2, (224, 224), antialias=True)
                                 .clamp(0, 1), return_tensors="pt").pixel_values.to(dev, dt)
            words = self.inversion_adapter(self.vision(pix).last_hidden_state)
            words = words.reshape((1, NUM_VSTAR, -1))
            text = "a photo of a model wearing %s %s" % (_CATEGORY_TEXT[category],
                                                          " $ " * NUM_VSTAR)
            ids = self.tokenizer([text], max_length=self.tokenizer.model_max_length,
                                 padding="max_length", truncation=True,
                                 return_tensors="pt").input_ids.to(dev)
            emb = self.encode_words(self.text_encoder, ids, words, NUM_VSTAR).last_hidden_state
            out = self.pipe(image=model_img, mask_image=mask, pose_map=pose, warped_cloth=warped,
                            prompt_embeds=emb, height=h, width=w, guidance_scale=guidance,
                            num_images_per_prompt=1, cloth_input_type="warped",
                            num_inference_steps=steps,
                            generator=D.generator(torch, dev, req.seed),
                            **D.step_kwargs(self.pipe, ctx, steps)).images[0]
        return D.png_of(out)
