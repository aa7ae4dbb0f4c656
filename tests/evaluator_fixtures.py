"""A tiny model and a tiny task on which REAL lmms-eval runs offline, on CPU, in seconds.

Shared by the runner's tests, the integration tests and the benchmark, so that all of them prove
the same thing: an lmms-eval evaluation really ran and its metric really came back. The model is a
2-layer Qwen2 (~100k parameters) with a byte-level BPE tokenizer and a ChatML chat template,
trained on the task's few items until greedy decoding answers them exactly, so `exact_match` is
1.0 (an untrained model scores 0.0): a wrong metric path can't pass by accident.

The task is lmms-eval task YAML plus a JSON-lines data file, returned as strings so a caller can
put them in a ConfigMap (keys are flat file names). The YAML names its data file by bare file name:
lmms-eval resolves it against the YAML's own directory (see evaluator-image/README.md).
"""

from __future__ import annotations

import json
from pathlib import Path

#: The task name; distinct from every task lmms-eval ships.
TASK_NAME = "evalkube_tinyqa"
#: Its metric key in the results document: results[TASK_NAME][METRIC_KEY].
METRIC_KEY = "exact_match,none"
#: (question, answer) items. Kept few: every heavy test evaluates all of them.
ITEMS: tuple[tuple[str, str], ...] = (
    ("What is the capital of France?", "Paris"),
    ("What color is the sky?", "blue"),
    ("How many legs does a cat have?", "four"),
    ("What is two plus three?", "five"),
    ("Which animal says moo?", "cow"),
)

#: ChatML, accepting both string content and lmms-eval's list-of-parts content.
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}{% if part['type'] == 'text' %}{{ part['text'] }}"
    "{% endif %}{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
_SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]

_TASK_YAML = f"""\
task: {TASK_NAME}
dataset_path: json
dataset_kwargs:
  data_files:
    test: {TASK_NAME}.jsonl
test_split: test
output_type: generate_until
doc_to_text: "{{{{question}}}}"
doc_to_target: "{{{{answer}}}}"
generation_kwargs:
  max_new_tokens: 8
  temperature: 0
metric_list:
  - metric: exact_match
    aggregation: mean
    higher_is_better: true
metadata:
  version: 1.0
"""


def make_tiny_task(directory: Path | None = None) -> tuple[str, dict[str, str]]:
    """(task name, {file name: content}): the task YAML and its data file, flat, as text (e.g.
    a ConfigMap's data). With `directory`, the files are also written there (created)."""
    data = "".join(json.dumps({"question": q, "answer": a}) + "\n" for q, a in ITEMS)
    files = {f"{TASK_NAME}.yaml": _TASK_YAML, f"{TASK_NAME}.jsonl": data}
    if directory is not None:
        directory.mkdir(parents=True, exist_ok=True)
        for file_name, content in files.items():
            (directory / file_name).write_text(content)
    return TASK_NAME, files


def make_tiny_model(directory: Path, steps: int = 300, seed: int = 0) -> Path:
    """Train and save the tiny model under `directory`/tiny-qwen2; returns that model folder.

    Trained on exactly the prompt the `huggingface` backend builds (the chat template with a
    generation prompt) followed by the answer and <|im_end|>, so greedy decoding reproduces the
    answers. Takes a few seconds on a CPU; deterministic for a given seed.
    """
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(seed)
    model_dir = directory / "tiny-qwen2"
    model_dir.mkdir(parents=True, exist_ok=True)

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    corpus = [f"{q} {a} user assistant" for q, a in ITEMS]
    bpe.train_from_iterator(
        corpus,
        trainers.BpeTrainer(
            vocab_size=400,
            special_tokens=_SPECIAL_TOKENS,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        ),
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        bos_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        chat_template=CHAT_TEMPLATE,
    )

    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        tie_word_embeddings=True,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=None,
    )
    model = Qwen2ForCausalLM(config)

    sequences, prompt_lengths = [], []
    for question, answer in ITEMS:
        messages = [{"role": "user", "content": [{"type": "text", "text": question}]}]
        prompt = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        prompt_ids = tokenizer(prompt)["input_ids"]
        answer_ids = tokenizer(answer + "<|im_end|>")["input_ids"]
        sequences.append(prompt_ids + answer_ids)
        prompt_lengths.append(len(prompt_ids))
    width = max(map(len, sequences))
    input_ids = torch.full((len(sequences), width), tokenizer.pad_token_id)
    labels = torch.full((len(sequences), width), -100)
    attention = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, (ids, start) in enumerate(zip(sequences, prompt_lengths, strict=True)):
        input_ids[row, : len(ids)] = torch.tensor(ids)
        labels[row, start : len(ids)] = torch.tensor(ids[start:])
        attention[row, : len(ids)] = 1

    # One thread: these matrices are tiny, and threads contending for a busy CPU made training
    # ten times slower. Restored afterwards, as the caller's process may be a test session.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
        model.train()
        for _ in range(steps):
            loss = model(input_ids=input_ids, attention_mask=attention, labels=labels).loss
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        model.eval()
    finally:
        torch.set_num_threads(threads)

    model.save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    return model_dir
