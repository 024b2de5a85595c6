"""Prompts for ECR reranking: pairwise yes/no (Qwen3-Reranker format) and listwise."""

from __future__ import annotations

VERSION = "rerank-2"

INSTRUCTION = "Given a video search query, judge whether the video description matches the query"

QWEN3_PREFIX = (
    "<|im_start|>system\nJudge whether the Document meets the requirements based on the Query and the Instruct "
    'provided. Note that the answer can only be "yes" or "no".<|im_end|>\n<|im_start|>user\n'
)
QWEN3_SUFFIX = "<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"


def pair_text(query: str, document: str, instruction: str = INSTRUCTION) -> str:
    """The Qwen3-Reranker user turn."""
    return f"<Instruct>: {instruction}\n<Query>: {query}\n<Document>: {document}"


def yes_no_messages(query: str, document: str, instruction: str = INSTRUCTION) -> list[dict[str, str]]:
    """The same judgement as chat messages, for any chat LLM whose first answer token we can read."""
    return [
        {"role": "system", "content": 'Judge whether the Document meets the requirements based on the Query and '
                                      'the Instruct provided. Answer only "yes" or "no".'},
        {"role": "user", "content": pair_text(query, document, instruction)},
    ]


LISTWISE_SYSTEM = (
    "You rank video descriptions by how well each matches a search query that may need reasoning "
    "(e.g. 'a bird that cannot fly' may mean an ostrich or a penguin). Reply with the candidate numbers, best first."
)


def listwise_messages(query: str, documents: list[str], max_chars: int = 400) -> list[dict[str, str]]:
    lines = "\n".join(f"[{i}] {doc[:max_chars]}" for i, doc in enumerate(documents))
    return [
        {"role": "system", "content": LISTWISE_SYSTEM},
        {"role": "user", "content": f"Query: {query}\nCandidates:\n{lines}"},
    ]
