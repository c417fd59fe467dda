"""A LightLLM-style client (as in LightLLM's InternVL docs): POST /generate with `inputs`,
`parameters` and `multimodal_params.images`, `<img></img>` where each image goes.

usage: lightllm_client.py URL FIXTURE_DIR
Prints one JSON line per reference case: {"case", "expected", "generated_ids", "text",
"count_output_tokens", "finish_reason", "stream_ids"}.
"""
import base64
import json
import os
import sys

import requests

url, fixture = sys.argv[1], sys.argv[2]
images_dir = os.path.join(os.path.dirname(fixture.rstrip("/")), "images")
with open(os.path.join(fixture, "reference.json")) as f:
    reference = json.load(f)

for i, case in enumerate(reference["chat"]):
    images = []
    for name in case.get("images", []):
        with open(os.path.join(images_dir, name), "rb") as f:
            images.append({"type": "base64", "data": base64.b64encode(f.read()).decode()})
    body = {
        "inputs": case["prompt_text"].replace("<IMG_CONTEXT>", "<img></img>"),
        "parameters": {
            "max_new_tokens": len(case["generated_ids"]),
            "do_sample": False,
            "ignore_eos": True,
            "return_details": True,
        },
        "multimodal_params": {"images": images},
    }
    r = requests.post(url + "/generate", json=body, timeout=60)
    if r.status_code != 200:
        sys.exit(f"case {i}: HTTP {r.status_code}: {r.text}")
    out = r.json()
    # The same request token by token from /generate_stream.
    stream_ids = []
    with requests.post(url + "/generate_stream", json=body, stream=True, timeout=60) as s:
        s.raise_for_status()
        for line in s.iter_lines():
            if line.startswith(b"data:"):
                event = json.loads(line[5:])
                stream_ids.append(event["token"]["id"])
    print(json.dumps({
        "case": i,
        "expected": case["generated_ids"],
        "generated_ids": [t["id"] for t in out["tokens"]],
        "text": out["generated_text"][0],
        "count_output_tokens": out["count_output_tokens"],
        "finish_reason": out["finish_reason"],
        "stream_ids": stream_ids,
    }), flush=True)
