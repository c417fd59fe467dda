"""(Copied from ../shared/tools/make_fixtures.py and extended with mistral-tiny.)
Make tiny Hugging Face checkpoints and reference outputs for the engine's parity tests.

Runs where transformers + torch are installed. Each fixture is a folder in HF layout
(config.json, model.safetensors, tokenizer.json, tokenizer_config.json, processor files)
plus reference.json and small .bin arrays (little-endian float32 / int32) produced by
transformers itself, fp32, eager attention, greedy decoding.
"""
import json, os, sys, struct, hashlib, importlib, pydoc, random, traceback
import numpy as np
import torch
from PIL import Image, ImageDraw
from tokenizers import Tokenizer, models, pre_tokenizers, decoders, normalizers, processors, trainers, Regex
import transformers as T

OUT = sys.argv[1] if len(sys.argv) > 1 else "/tmp/fixtures"
ONLY = set(sys.argv[2].split(",")) if len(sys.argv) > 2 else None
os.makedirs(OUT, exist_ok=True)
torch.set_num_threads(8)

# ---------------------------------------------------------------- corpus
def corpus():
    mods = ["os", "json", "re", "collections", "itertools", "functools", "typing", "pathlib", "argparse", "logging",
            "unittest", "email", "asyncio", "threading", "datetime", "decimal", "statistics", "random", "string",
            "textwrap", "difflib", "csv", "sqlite3", "zipfile", "shutil", "tempfile", "socket", "hashlib", "base64",
            "struct", "io", "pickle", "copy", "enum", "dataclasses", "contextlib", "math", "heapq", "bisect", "inspect",
            "ast", "calendar", "queue", "uuid", "html", "mimetypes", "configparser", "http.client", "urllib.parse"]
    texts = []
    for m in mods:
        try:
            texts.append(pydoc.render_doc(importlib.import_module(m), renderer=pydoc.plaintext))
        except Exception:
            pass
    zh = ["连续批处理是一种动态批处理技术，其核心思想是根据请求到达时间动态调整批处理规模。",
          "多模态模型支持图像与文本的联合处理。", "图像嵌入缓存根据图片哈希值进行匹配，采用最近最少使用淘汰机制。",
          "你好，世界！这是一个测试。", "显存不足时可以尝试量化部署。"] * 200
    text = "\n".join(texts)
    chunks = [text[i:i + 2000] for i in range(0, len(text), 2000)] + zh
    random.Random(0).shuffle(chunks)
    return chunks

CORPUS = corpus()
print("corpus chunks", len(CORPUS), "chars", sum(map(len, CORPUS)))

# ---------------------------------------------------------------- tokenizers
LLAMA3_PAT = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
QWEN_PAT = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"

def byte_level_bpe(pattern, vocab, specials, nfc=False):
    tok = Tokenizer(models.BPE())
    if nfc:
        tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(pattern), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    tr = trainers.BpeTrainer(vocab_size=vocab, special_tokens=specials, show_progress=False,
                             initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(CORPUS, tr)
    return tok

def sp_bpe(vocab, specials):
    """Llama-2 / Vicuna style: metaspace, byte fallback, BOS added."""
    tok = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="first", split=True)
    base = ["<unk>", "<s>", "</s>"] + [f"<0x{i:02X}>" for i in range(256)]
    tr = trainers.BpeTrainer(vocab_size=vocab, special_tokens=base, show_progress=False)
    tok.train_from_iterator(CORPUS, tr)
    tok.pre_tokenizer = None
    tok.normalizer = normalizers.Sequence([normalizers.Prepend("\u2581"), normalizers.Replace(" ", "\u2581")])
    tok.decoder = decoders.Sequence([decoders.Replace("\u2581", " "), decoders.ByteFallback(), decoders.Fuse(), decoders.Strip(" ", 1, 0)])
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", tok.token_to_id("<s>"))])
    if specials:
        tok.add_special_tokens(specials)
    return tok

def hf_tokenizer(tok, **kw):
    cls = getattr(T, "PreTrainedTokenizerFast", None) or getattr(T, "TokenizersBackend")
    return cls(tokenizer_object=tok, **kw)

LLAMA3_TEMPLATE = (
    "{{- bos_token }}"
    "{%- for message in messages %}"
    "{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' }}"
    "{%- if message['content'] is string %}{{- message['content'] | trim }}"
    "{%- else %}{%- for part in message['content'] %}{%- if part['type'] == 'text' %}{{- part['text'] | trim }}{%- endif %}{%- endfor %}{%- endif %}"
    "{{- '<|eot_id|>' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{%- endif %}")

CHATML_TEMPLATE = (
    "{%- for message in messages %}"
    "{%- if loop.first and message['role'] != 'system' %}{{- '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}{%- endif %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' }}"
    "{%- if message['content'] is string %}{{- message['content'] }}"
    "{%- else %}{%- for part in message['content'] %}"
    "{%- if part['type'] == 'image' %}{{- IMAGE_PLACEHOLDER }}"
    "{%- elif part['type'] == 'text' %}{{- part['text'] }}{%- endif %}"
    "{%- endfor %}{%- endif %}"
    "{{- '<|im_end|>\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}")

VICUNA_TEMPLATE = (
    "{%- for message in messages %}"
    "{%- if message['role'] == 'system' %}{{- message['content'] + ' ' }}"
    "{%- else %}{{- message['role'] | upper + ': ' }}"
    "{%- if message['content'] is string %}{{- message['content'] }}"
    "{%- else %}"
    "{%- for part in message['content'] | selectattr('type', 'equalto', 'image') %}{{- '<image>\\n' }}{%- endfor %}"
    "{%- for part in message['content'] | selectattr('type', 'equalto', 'text') %}{{- part['text'] }}{%- endfor %}"
    "{%- endif %}"
    "{{- '</s>' if message['role'] == 'assistant' else ' ' }}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- 'ASSISTANT:' }}{%- endif %}")

_TOKS = {}
def llama3_tok(vocab=2000):
    k = ("l3", vocab)
    if k not in _TOKS:
        sp = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]
        t = byte_level_bpe(LLAMA3_PAT, vocab, sp)
        t.post_processor = processors.Sequence([processors.ByteLevel(trim_offsets=False), processors.TemplateProcessing(
            single="<|begin_of_text|> $A", pair="<|begin_of_text|> $A <|begin_of_text|> $B",
            special_tokens=[("<|begin_of_text|>", t.token_to_id("<|begin_of_text|>"))])])
        _TOKS[k] = t
    return hf_tokenizer(_TOKS[k], bos_token="<|begin_of_text|>", eos_token="<|eot_id|>", chat_template=LLAMA3_TEMPLATE)

def qwen_tok(vocab=2000, vision=False):
    k = ("qw", vocab, vision)
    if k not in _TOKS:
        sp = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"] + (["<img>", "</img>", "<IMG_CONTEXT>", "<video>"] if vision else [])
        _TOKS[k] = byte_level_bpe(QWEN_PAT, vocab, sp, nfc=True)
    kw = {}
    tmpl = CHATML_TEMPLATE.replace("IMAGE_PLACEHOLDER", "'<IMG_CONTEXT>\\n'" if vision else "''")
    if vision:
        kw["extra_special_tokens"] = {"start_image_token": "<img>", "end_image_token": "</img>",
                                      "context_image_token": "<IMG_CONTEXT>", "video_token": "<video>"}
    return hf_tokenizer(_TOKS[k], eos_token="<|im_end|>", pad_token="<|endoftext|>", chat_template=tmpl, **kw)

def vicuna_tok(vocab=2000):
    k = ("vc", vocab)
    if k not in _TOKS:
        _TOKS[k] = sp_bpe(vocab, ["<image>", "<pad>"])
    return hf_tokenizer(_TOKS[k], bos_token="<s>", eos_token="</s>", unk_token="<unk>", pad_token="<pad>", chat_template=VICUNA_TEMPLATE)

# ---------------------------------------------------------------- images
def make_images(d):
    os.makedirs(d, exist_ok=True)
    im = Image.new("RGB", (64, 48), (240, 240, 230)); dr = ImageDraw.Draw(im)
    dr.rectangle([4, 4, 28, 40], fill=(220, 30, 30)); dr.ellipse([34, 10, 60, 36], fill=(20, 60, 200))
    im.save(f"{d}/shapes.png")
    a = np.zeros((60, 100, 3), np.uint8); a[..., 0] = np.linspace(0, 255, 100)[None, :]; a[..., 1] = np.linspace(0, 255, 60)[:, None]; a[..., 2] = 128
    Image.fromarray(a).save(f"{d}/gradient.jpg", quality=90)
    t = Image.new("RGB", (30, 90), (10, 120, 10)); ImageDraw.Draw(t).rectangle([5, 30, 25, 60], fill=(250, 250, 0)); t.save(f"{d}/tall.png")
    w = Image.new("RGBA", (40, 40), (0, 0, 0, 0)); ImageDraw.Draw(w).ellipse([5, 5, 35, 35], fill=(200, 0, 200, 255)); w.save(f"{d}/alpha.png")
    return ["shapes.png", "gradient.jpg", "tall.png", "alpha.png"]

# ---------------------------------------------------------------- helpers
def wbin(path, arr, dtype):
    np.ascontiguousarray(np.asarray(arr, dtype=dtype)).tofile(path)

TEXT_CHATS = [
    [{"role": "user", "content": "Hello! What does a scheduler do?"}],
    [{"role": "system", "content": "You answer briefly."}, {"role": "user", "content": "Explain paged attention in one line."},
     {"role": "assistant", "content": "It stores the KV cache in fixed-size blocks."}, {"role": "user", "content": "And radix attention?"}],
    [{"role": "user", "content": "连续批处理是什么？请简单回答。"}],
]
RAW_PROMPTS = ["The capital of France is", "def fibonacci(n):\n    ", "  leading spaces and\ttabs\n\nnew lines", "数字 12345 和 emoji 🙂 mixed"]
TOKENIZE = RAW_PROMPTS + ["", " ", "Hello world", "<|im_start|>literal special?", "don't can't it's", "a" * 300, "ünïcödé naïve café", "\u00e9 vs e\u0301"]

def topk(logits, k=10):
    idx = np.argsort(-logits)[:k]
    return [[int(i), float(logits[i])] for i in idx]

def greedy(model, inputs, n=12):
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=n, do_sample=False, output_logits=True, return_dict_in_generate=True)
    gen = out.sequences[0, inputs["input_ids"].shape[1]:].tolist()
    logits = [l[0].float().numpy() for l in out.logits]
    margins = [float(np.sort(l)[-1] - np.sort(l)[-2]) for l in logits]
    return gen, logits, margins

def text_fixture(name, tok, model, note):
    d = f"{OUT}/{name}"; os.makedirs(d, exist_ok=True)
    model.eval(); model.save_pretrained(d); tok.save_pretrained(d)
    ref = {"name": name, "note": note, "transformers": T.__version__, "torch": torch.__version__,
           "architecture": model.config.architectures[0] if model.config.architectures else type(model).__name__,
           "chat": [], "completion": [], "tokenize": []}
    for i, msgs in enumerate(TEXT_CHATS):
        text = tok.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
        ids = tok(text, add_special_tokens=False, return_tensors="pt")
        gen, logits, margins = greedy(model, {"input_ids": ids["input_ids"], "attention_mask": ids["attention_mask"]})
        wbin(f"{d}/chat{i}_logits0.f32.bin", logits[0], np.float32)
        ref["chat"].append({"messages": msgs, "prompt_text": text, "prompt_ids": ids["input_ids"][0].tolist(), "generated_ids": gen,
                            "generated_text": tok.decode(gen, skip_special_tokens=True), "top10_step0": topk(logits[0]),
                            "margins": margins, "logits0_file": f"chat{i}_logits0.f32.bin"})
    for i, p in enumerate(RAW_PROMPTS):
        ids = tok(p, return_tensors="pt")
        gen, logits, margins = greedy(model, {"input_ids": ids["input_ids"], "attention_mask": ids["attention_mask"]})
        ref["completion"].append({"prompt": p, "prompt_ids": ids["input_ids"][0].tolist(), "generated_ids": gen,
                                  "generated_text": tok.decode(gen, skip_special_tokens=True), "top10_step0": topk(logits[0]), "margins": margins})
    for s in TOKENIZE:
        ids = tok(s, add_special_tokens=True)["input_ids"]
        ref["tokenize"].append({"text": s, "ids_with_special": ids, "ids": tok(s, add_special_tokens=False)["input_ids"], "decoded": tok.decode(ids, skip_special_tokens=True)})
    json.dump(ref, open(f"{d}/reference.json", "w"), ensure_ascii=False, indent=1)
    print(name, "ok; min margin", min(min(c["margins"]) for c in ref["chat"] + ref["completion"]))

def vlm_fixture(name, proc, model, note, image_dir, cases):
    d = f"{OUT}/{name}"; os.makedirs(d, exist_ok=True)
    model.eval(); model.save_pretrained(d); proc.save_pretrained(d)
    ref = {"name": name, "note": note, "transformers": T.__version__, "torch": torch.__version__,
           "architecture": model.config.architectures[0] if model.config.architectures else type(model).__name__, "chat": []}
    for i, (msgs, imgs) in enumerate(cases):
        text = proc.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
        pil = [Image.open(f"{image_dir}/{f}") for f in imgs]
        inputs = proc(images=pil or None, text=text, return_tensors="pt")
        gen, logits, margins = greedy(model, dict(inputs))
        pv = inputs["pixel_values"].float().numpy() if "pixel_values" in inputs else None
        if pv is not None:
            wbin(f"{d}/case{i}_pixel_values.f32.bin", pv, np.float32)
        wbin(f"{d}/case{i}_logits0.f32.bin", logits[0], np.float32)
        extra = {k: v.tolist() for k, v in inputs.items() if k in ("image_sizes", "num_patches")}
        ref["chat"].append({"messages": msgs, "images": imgs, "prompt_text": text, "input_ids": inputs["input_ids"][0].tolist(),
                            "pixel_values_shape": list(pv.shape) if pv is not None else None,
                            "pixel_values_file": f"case{i}_pixel_values.f32.bin" if pv is not None else None,
                            "generated_ids": gen, "generated_text": proc.tokenizer.decode(gen, skip_special_tokens=True),
                            "top10_step0": topk(logits[0]), "margins": margins, "logits0_file": f"case{i}_logits0.f32.bin", **extra})
    json.dump(ref, open(f"{d}/reference.json", "w"), ensure_ascii=False, indent=1)
    print(name, "ok; min margin", min(min(c["margins"]) for c in ref["chat"]))

def ids_of(tok, *names):
    return [tok.convert_tokens_to_ids(n) for n in names]

IMG_DIR = f"{OUT}/images"
IMAGES = make_images(IMG_DIR)
VCASES = [
    ([{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What is in this image?"}]}], ["shapes.png"]),
    ([{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Describe the colors."}]}], ["gradient.jpg"]),
    ([{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "图片里有什么？"}]}], ["tall.png"]),
    ([{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Is it round?"}]}], ["alpha.png"]),
    ([{"role": "user", "content": [{"type": "text", "text": "No image here, just text."}]}], []),
]

def llama_text_cfg(tok, seed_kw):
    return dict(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                num_key_value_heads=2, max_position_embeddings=2048, rms_norm_eps=1e-5, initializer_range=0.15, **seed_kw)

# ---------------------------------------------------------------- fixtures
def fx_llama3_tiny():
    tok = llama3_tok(); torch.manual_seed(1)
    cfg = T.LlamaConfig(**llama_text_cfg(tok, {}), rope_theta=500000.0, tie_word_embeddings=False,
                        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, attn_implementation="eager")
    text_fixture("llama3-tiny", tok, T.LlamaForCausalLM(cfg), "Llama-3 style: byte-level BPE, GQA 4q/2kv, untied")

def fx_qwen2_tiny():
    tok = qwen_tok(); torch.manual_seed(2)
    cfg = T.Qwen2Config(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                        num_key_value_heads=2, max_position_embeddings=2048, rms_norm_eps=1e-6, rope_theta=1000000.0,
                        tie_word_embeddings=True, initializer_range=0.15, eos_token_id=tok.eos_token_id, attn_implementation="eager")
    m = T.Qwen2ForCausalLM(cfg)
    with torch.no_grad():
        for l in m.model.layers:
            for p in (l.self_attn.q_proj, l.self_attn.k_proj, l.self_attn.v_proj):
                p.bias.normal_(0, 0.2)
    text_fixture("qwen2-tiny", tok, m, "Qwen2 style: ChatML, qkv bias, tied embeddings")

def fx_qwen3_tiny():
    tok = qwen_tok(); torch.manual_seed(13)
    cfg = T.Qwen3Config(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                        num_key_value_heads=2, head_dim=32, max_position_embeddings=2048, rms_norm_eps=1e-6, rope_theta=1000000.0,
                        tie_word_embeddings=True, initializer_range=0.15, eos_token_id=tok.eos_token_id, attn_implementation="eager")
    text_fixture("qwen3-tiny", tok, T.Qwen3ForCausalLM(cfg), "Qwen3: q/k RMSNorm, head_dim 32 != hidden/heads")

CLIP_MEAN, CLIP_STD = [0.48145466, 0.4578275, 0.40821073], [0.26862954, 0.26130258, 0.27577711]

def fx_llava_tiny(name="llava-tiny", seed=3, strategy="default", layer=-2, size=32, patch=8):
    tok = vicuna_tok(); torch.manual_seed(seed)
    v = T.CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, image_size=size, patch_size=patch, projection_dim=32)
    t = T.LlamaConfig(**llama_text_cfg(tok, {}), tie_word_embeddings=False, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    img_id = tok.convert_tokens_to_ids("<image>")
    n = (size // patch) ** 2 + (1 if strategy == "full" else 0)
    cfg = T.LlavaConfig(vision_config=v, text_config=t, image_token_index=img_id, projector_hidden_act="gelu",
                        vision_feature_select_strategy=strategy, vision_feature_layer=layer, image_seq_length=n)
    cfg._attn_implementation = "eager"
    ip = T.CLIPImageProcessor(size={"shortest_edge": size}, crop_size={"height": size, "width": size}, image_mean=CLIP_MEAN, image_std=CLIP_STD)
    proc = T.LlavaProcessor(image_processor=ip, tokenizer=tok, patch_size=patch, vision_feature_select_strategy=strategy,
                            chat_template=VICUNA_TEMPLATE, num_additional_image_tokens=1)
    vlm_fixture(name, proc, T.LlavaForConditionalGeneration(cfg), f"LLaVA-1.5 style: CLIP {size}px/{patch}, {strategy} select, layer {layer}, Vicuna template", IMG_DIR, VCASES)

def fx_llava_next_tiny():
    tok = vicuna_tok(); torch.manual_seed(4)
    v = T.CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, image_size=32, patch_size=8, projection_dim=32)
    t = T.LlamaConfig(**llama_text_cfg(tok, {}), tie_word_embeddings=False, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    pins = [[32, 64], [64, 32], [64, 64], [32, 96], [96, 32]]
    cfg = T.LlavaNextConfig(vision_config=v, text_config=t, image_token_index=tok.convert_tokens_to_ids("<image>"), projector_hidden_act="gelu",
                            vision_feature_select_strategy="default", vision_feature_layer=-2, image_grid_pinpoints=pins, image_seq_length=16)
    cfg._attn_implementation = "eager"
    ip = T.LlavaNextImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}, image_grid_pinpoints=pins, image_mean=CLIP_MEAN, image_std=CLIP_STD)
    proc = T.LlavaNextProcessor(image_processor=ip, tokenizer=tok, patch_size=8, vision_feature_select_strategy="default",
                                chat_template=VICUNA_TEMPLATE, num_additional_image_tokens=1)
    vlm_fixture("llava-next-tiny", proc, T.LlavaNextForConditionalGeneration(cfg), "LLaVA-1.6 (Next) style: anyres grid pinpoints, unpad + image_newline", IMG_DIR, VCASES)

def fx_internvl_tiny(name="internvl-tiny", seed=5, max_patches=6):
    tok = qwen_tok(vision=True); torch.manual_seed(seed)
    v = T.InternVLVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, image_size=56, patch_size=14)
    t = T.Qwen2Config(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, max_position_embeddings=4096, rms_norm_eps=1e-6, rope_theta=1000000.0,
                      tie_word_embeddings=False, initializer_range=0.15, eos_token_id=tok.eos_token_id)
    cfg = T.InternVLConfig(vision_config=v, text_config=t, image_token_id=tok.convert_tokens_to_ids("<IMG_CONTEXT>"), image_seq_length=4, downsample_ratio=0.5)
    cfg._attn_implementation = "eager"
    IP = getattr(T, "GotOcr2ImageProcessor")
    ip = IP(size={"height": 56, "width": 56}, crop_to_patches=True, min_patches=1, max_patches=max_patches,
            image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225])
    proc = T.InternVLProcessor(image_processor=ip, tokenizer=tok, video_processor=T.InternVLVideoProcessor(), image_seq_length=4, chat_template=tok.chat_template)
    vlm_fixture(name, proc, T.InternVLForConditionalGeneration(cfg), f"InternVL3-hf style: 56px tiles, patch 14, pixel shuffle 0.5, up to {max_patches} tiles + thumbnail, Qwen2 text", IMG_DIR, VCASES)

MISTRAL_TEMPLATE = (
    "{{- bos_token }}"
    "{%- for message in messages %}"
    "{%- if message['role'] == 'system' %}{{- message['content'] + '\\n\\n' }}"
    "{%- elif message['role'] == 'user' %}{{- '[INST] ' + message['content'] + ' [/INST]' }}"
    "{%- else %}{{- ' ' + message['content'] + eos_token }}{%- endif %}"
    "{%- endfor %}")

def mistral_tok(vocab=2000):
    k = ("mi", vocab)
    if k not in _TOKS:
        _TOKS[k] = sp_bpe(vocab, ["[INST]", "[/INST]"])
    return hf_tokenizer(_TOKS[k], bos_token="<s>", eos_token="</s>", unk_token="<unk>", chat_template=MISTRAL_TEMPLATE)

def fx_mistral_tiny():
    """Mistral: sliding-window attention (window 8, so every prompt here is longer than the window)."""
    tok = mistral_tok(); torch.manual_seed(21)
    cfg = T.MistralConfig(**llama_text_cfg(tok, {}), rope_theta=10000.0, tie_word_embeddings=False, sliding_window=8,
                          bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, attn_implementation="eager")
    m = T.MistralForCausalLM(cfg)
    text_fixture("mistral-tiny", tok, m, "Mistral style: sliding_window 8, SentencePiece-style BPE with byte fallback, [INST] template")
    # The window must matter: the same weights without it give other logits on a long prompt, and a full forward
    # over prompt + generated ids (sliding mask, no cache) agrees with the cached greedy decode.
    ids = tok("def fibonacci(n):\n    return fibonacci(n - 1) + fibonacci(n - 2)", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        a = m(ids).logits[0, -1]
        full = T.MistralForCausalLM(T.MistralConfig(**{**cfg.to_dict(), "sliding_window": None}))
        full.load_state_dict(m.state_dict()); full.eval()
        b = full(ids).logits[0, -1]
        ref = json.load(open(f"{OUT}/mistral-tiny/reference.json"))
        c = ref["completion"][1]
        seq = torch.tensor([c["prompt_ids"] + c["generated_ids"]])
        am = m(seq).logits[0, len(c["prompt_ids"]) - 1:-1].argmax(-1).tolist()
    print("mistral window check: max |logits(window) - logits(no window)| =", float((a - b).abs().max()),
          "; full-forward argmax equals cached greedy:", am == c["generated_ids"])

ALL = {"mistral-tiny": fx_mistral_tiny, "llama3-tiny": fx_llama3_tiny, "qwen2-tiny": fx_qwen2_tiny, "qwen3-tiny": fx_qwen3_tiny, "llava-tiny": fx_llava_tiny,
       "llava-next-tiny": fx_llava_next_tiny, "internvl-tiny": fx_internvl_tiny}
for n, f in ALL.items():
    if ONLY and n not in ONLY:
        continue
    try:
        f()
    except Exception:
        print("FAILED", n); traceback.print_exc(limit=6)
