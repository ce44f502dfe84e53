"""OpenAI's released circuit-sparsity models, in and out (docs/openai.md).

- `bpe`: their tinypython_2k BPE files <-> a `tokenizers` JSON that encodes the same.
- `config_map`: beeg_config.json <-> our ModelConfig.
- `weights`: their state dict <-> ours (names, shapes, the q/k/v split).
- `convert`: `import-openai` and `export-openai`; `cli` mounts them.

Node names are the same on both sides: their hooks record `{i}.attn.act_in`, `{i}.attn.q|k|v`,
`{i}.attn.resid_delta`, `{i}.mlp.act_in`, `{i}.mlp.post_act`, `{i}.mlp.resid_delta` at the
places our GPT has those locations, after AbsTopK. Their q/k/v AbsTopK acts on the whole
[n_head x d_head] vector of a token, across heads jointly, as ours does.
"""
