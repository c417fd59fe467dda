# Temporary: run on the device machine to produce references; deleted afterwards.
import json, os, sys
from types import SimpleNamespace
import numpy as np
import torch
import transformers as T
from PIL import Image
import PIL
import torchvision
from torchvision.transforms.v2 import functional as F
from torchvision.transforms import InterpolationMode as IM

OUT = os.environ["OUT"]
rng = np.random.default_rng(1234)
man = {"versions": {"transformers": T.__version__, "torch": torch.__version__, "torchvision": torchvision.__version__,
                    "pillow": PIL.__version__, "cpu": torch.backends.cpu.get_cpu_capability()}, "resize": [], "proc": [], "tokens": []}

def img(h, w):
    a = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    yy, xx = np.mgrid[0:h, 0:w]
    smooth = np.stack([(xx * 255 // max(w - 1, 1)), (yy * 255 // max(h - 1, 1)), ((xx + yy) % 256)], -1).astype(np.uint8)
    m = (rng.random((h, w, 1)) < 0.5)
    return np.where(m, a, smooth).astype(np.uint8)

cases = [(37, 23, 64, 64), (500, 7, 33, 5), (7, 500, 5, 33), (64, 48, 42, 32), (100, 60, 53, 32), (30, 90, 32, 96),
         (40, 40, 64, 64), (1000, 999, 17, 13), (13, 17, 1000, 999), (96, 96, 96, 40), (50, 80, 50, 81), (333, 251, 224, 168),
         (640, 480, 336, 252), (3, 2, 300, 200)]
for i, (iw, ih, ow, oh) in enumerate(cases):
    a = img(ih, iw)
    a.tofile(f"{OUT}/r{i}_in.u8")
    for name, pil_f, tv_f in (("bicubic", Image.BICUBIC, IM.BICUBIC), ("bilinear", Image.BILINEAR, IM.BILINEAR)):
        np.asarray(Image.fromarray(a).resize((ow, oh), pil_f)).tofile(f"{OUT}/r{i}_{name}_pil.u8")
        t = torch.from_numpy(a).permute(2, 0, 1).contiguous()
        F.resize(t, [oh, ow], interpolation=tv_f, antialias=True).permute(1, 2, 0).contiguous().numpy().tofile(f"{OUT}/r{i}_{name}_torch.u8")
    man["resize"].append({"i": i, "in": [ih, iw], "out": [oh, ow]})

MEAN, STD = [0.48145466, 0.4578275, 0.40821073], [0.26862954, 0.26130258, 0.27577711]
confs = {
    "clip32": ("clip", dict(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}, image_mean=MEAN, image_std=STD)),
    "clip336": ("clip", dict(size={"shortest_edge": 336}, crop_size={"height": 336, "width": 336}, image_mean=MEAN, image_std=STD)),
    "next32": ("next", dict(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}, image_mean=MEAN, image_std=STD,
                            image_grid_pinpoints=[[32, 64], [64, 32], [64, 64], [32, 96], [96, 32]])),
    "ivl56": ("ivl", dict(size={"height": 56, "width": 56}, crop_to_patches=True, min_patches=1, max_patches=6,
                          image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225])),
}
cls = {"clip": ("CLIPImageProcessor", "CLIPImageProcessorPil"), "next": ("LlavaNextImageProcessor", "LlavaNextImageProcessorPil"),
       "ivl": ("GotOcr2ImageProcessor", "GotOcr2ImageProcessorPil")}
sizes = [(57, 131), (131, 57), (375, 500), (41, 47), (300, 30), (25, 77), (64, 64), (99, 100)]
k = 0
for cname, (kind, kw) in confs.items():
    for (h, w) in sizes:
        if cname == "clip336" and h * w < 300 * 30:
            continue
        a = img(h, w)
        a.tofile(f"{OUT}/p{k}_in.u8")
        for backend, cn in zip(("torch", "pil"), cls[kind]):
            try:
                proc = getattr(T, cn)(**kw)
                o = proc(Image.fromarray(a), return_tensors="pt")
                pv = o["pixel_values"].float().numpy()
                pv.tofile(f"{OUT}/p{k}_{backend}.f32")
                man["proc"].append({"k": k, "conf": cname, "in": [h, w], "backend": backend, "class": cn, "shape": list(pv.shape),
                                    "image_sizes": o["image_sizes"].tolist() if "image_sizes" in o else None})
            except Exception as e:
                man["proc"].append({"k": k, "conf": cname, "backend": backend, "class": cn, "error": repr(e)})
        k += 1

P = T.LlavaNextProcessor
for pins, crop, patch in (([[32, 64], [64, 32], [64, 64], [32, 96], [96, 32]], 32, 8),
                          ([[336, 672], [672, 336], [672, 672], [1008, 336], [336, 1008]], 336, 14)):
    ns = SimpleNamespace(image_processor=SimpleNamespace(image_grid_pinpoints=pins), patch_size=patch, num_additional_image_tokens=1)
    ns._get_unpadded_features = lambda *a, ns=ns: P._get_unpadded_features(ns, *a)
    for h in (14, 20, 30, 48, 60, 90, 100, 333, 480, 768, 1000, 1080, 2000):
        for w in (14, 21, 40, 64, 100, 250, 640, 720, 1024, 1920, 3000):
            man["tokens"].append({"pins": pins, "crop": crop, "patch": patch, "h": h, "w": w,
                                  "n": P._get_number_of_features(ns, h, w, crop, crop) - 1})
json.dump(man, open(f"{OUT}/manifest.json", "w"))
print(json.dumps(man["versions"]), len(man["resize"]), len(man["proc"]), len(man["tokens"]))
print([p for p in man["proc"] if "error" in p][:5])
