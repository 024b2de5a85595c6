"""``twinseek train ...``: build training data, fine-tune the text embedder, train the twin encoders."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from twinseek.config import load_settings

if TYPE_CHECKING:
    from twinseek.embedders.data import LeakFilter

logger = logging.getLogger(__name__)

train_app = typer.Typer(
    help=(
        "Train twinseek's embedders offline. Typical flow:\n\n"
        "1. twinseek train data triplets --out data/triplets.jsonl --bench ../shared/data/dev-bench\n\n"
        "2. twinseek train text data/triplets.jsonl --out models/text\n\n"
        "3. twinseek train data twin --store my-store --out data/twin.jsonl\n\n"
        "4. twinseek train twin data/twin.jsonl --store my-store --out models/twin\n\n"
        "Each prints the retrieval settings that load the result."
    ),
    no_args_is_help=True,
    rich_markup_mode=None,  # plain help text, as the rest of the CLI (twinseek.cli)
)
data_app = typer.Typer(help="Build training data (JSONL with provenance).", no_args_is_help=True,
                       rich_markup_mode=None)
train_app.add_typer(data_app, name="data")

BenchOpt = Annotated[list[Path] | None, typer.Option(
    "--bench", help="Evaluation bench folder(s) whose texts must not leak into training data (repeatable).")]
SeedOpt = Annotated[int, typer.Option(help="Random seed (data order, sampling).")]


def _leak_filter(benches: list[Path] | None) -> LeakFilter | None:
    if not benches:
        return None
    from twinseek.embedders import data  # lazy: the data builders load numpy, PIL and the store

    return data.LeakFilter([t for b in benches for t in data.bench_texts(b)])


@data_app.command("triplets")
def data_triplets(
    out: Annotated[Path, typer.Option(help="Output JSONL.")],
    source: Annotated[list[str], typer.Option(
        help="Sentence source(s): grammar (built-in captions), store (ECR texts of --store), "
             "file (--sentences), llm (captions written by the configured LLM).")] = ["grammar"],  # noqa: B006
    store: Annotated[Path | None, typer.Option(help="Twin store for --source store.")] = None,
    sentences: Annotated[Path | None, typer.Option(help="Text file, one sentence a line, for --source file.")] = None,
    n: Annotated[int, typer.Option(help="Sentences from the grammar / the LLM.")] = 1500,
    kinds: Annotated[str, typer.Option(help="Comma-separated: temporal,negation,composed.")] = "temporal,negation,composed",
    bench: BenchOpt = None,
    seed: SeedOpt = 0,
) -> None:
    """TARA text triplets: temporal (antonym swaps), negation (negators), composed (caption + edit)."""
    from twinseek.embedders import data  # lazy: the data builders load numpy, PIL and the store
    from twinseek.llm.client import open_llm  # lazy: urllib and the SDK, only when the LLM is asked

    texts: list[str] = []
    for name in source:
        if name == "grammar":
            texts += data.grammar_sentences(n, seed)
        elif name == "store":
            if store is None:
                raise typer.BadParameter("--source store needs --store")
            texts += data.store_sentences(store)
        elif name == "file":
            if sentences is None:
                raise typer.BadParameter("--source file needs --sentences")
            texts += [s.strip() for s in sentences.read_text().splitlines() if s.strip()]
        elif name == "llm":

            texts += data.llm_sentences(open_llm(load_settings()), n, seed)
        else:
            raise typer.BadParameter(f"unknown source {name!r}")
    triplets = data.build_triplets(texts, "+".join(source), seed, kinds=kinds.split(","),
                                   leak_filter=_leak_filter(bench))
    count = data.write_jsonl(out, triplets)
    typer.echo(f"wrote {count} triplets from {len(texts)} sentences to {out}")


@data_app.command("twin")
def data_twin(
    store: Annotated[Path, typer.Option(help="Twin store whose components become training pairs.")],
    out: Annotated[Path, typer.Option(help="Output JSONL.")],
    bench: BenchOpt = None,
    paraphrase: Annotated[int, typer.Option(help="Also reword this many sub-queries with the LLM (0: off).")] = 0,
    seed: SeedOpt = 0,
) -> None:
    """Compositional pairs: template sub-queries with the components of their video that satisfy them."""
    from twinseek.embedders import data  # lazy: the data builders load numpy, PIL and the store
    from twinseek.llm.client import open_llm  # lazy: urllib and the SDK, only when the LLM is asked

    paraphraser = None
    if paraphrase:

        paraphraser = data.llm_paraphraser(open_llm(load_settings()), paraphrase)
    pairs = data.twin_pairs(store, seed, leak_filter=_leak_filter(bench), paraphraser=paraphraser)
    typer.echo(f"wrote {data.write_jsonl(out, pairs)} sub-query/component pairs to {out}")


def _print_settings(folder: Path) -> None:
    from twinseek.embedders.trainer import retrieval_overrides  # lazy: torch, sentence-transformers

    overrides = retrieval_overrides(folder)
    typer.echo("load it with these settings (environment form):")
    for key, value in overrides.items():
        typer.echo(f"  TWINSEEK_RETRIEVAL__{key.upper()}={value}")
    typer.echo(json.dumps({"retrieval": overrides}))


@train_app.command("text")
def train_text_cmd(
    data_path: Annotated[Path, typer.Argument(metavar="TRIPLETS", help="JSONL from `twinseek train data triplets`.")],
    out: Annotated[Path, typer.Option(help="Folder for the trained model.")],
    run_dir: Annotated[Path | None, typer.Option(help="Run folder (default runs/<out name>).")] = None,
    base: Annotated[str | None, typer.Option(help="Model folder to start from (default: embedded MiniLM).")] = None,
    lora: Annotated[bool, typer.Option(help="Paper tier: LoRA on a Qwen2-VL EOL embedder given by --base.")] = False,
    epochs: int = 1,
    batch_size: int = 32,
    lr: float = 2e-5,
    temperature: float = 0.05,
    symmetric: Annotated[bool, typer.Option(help="Symmetric (GVE/CLIP) InfoNCE.")] = False,
    cached: Annotated[int, typer.Option(help="Gradient-cache mini-batch size (0: plain loss).")] = 0,
    max_steps: Annotated[int | None, typer.Option(help="Stop after this many steps.")] = None,
    seed: SeedOpt = 0,
) -> None:
    """Fine-tune the text embedder on triplets (TARA recipe: InfoNCE, in-batch + hard negative)."""
    from twinseek.embedders.data import read_triplets  # lazy: numpy, PIL and the store
    from twinseek.embedders.trainer import TextTrainConfig, train_text  # lazy: torch, sentence-transformers

    cfg = TextTrainConfig(run_dir=run_dir or Path("runs") / out.name, epochs=epochs, batch_size=batch_size, lr=lr,
                          temperature=temperature, symmetric=symmetric,
                          cached_mini_batch=cached, max_steps=max_steps, seed=seed, base=base,
                          tier="paper" if lora else "embedded", progress=True)
    result = train_text(read_triplets(data_path), cfg, out)
    typer.echo(f"trained {result.steps} steps, loss {result.first_loss} -> {result.loss:.4f}; saved {out}")
    if lora:
        typer.echo(f"  TWINSEEK_RETRIEVAL__DENSE_EMBEDDER=tara TWINSEEK_RETRIEVAL__TARA_MODEL={out.resolve()}")
    else:
        _print_settings(out)


@train_app.command("twin")
def train_twin_cmd(
    data_path: Annotated[Path, typer.Argument(metavar="PAIRS", help="JSONL from `twinseek train data twin`.")],
    out: Annotated[Path, typer.Option(help="Folder for the trained encoders.")],
    store: Annotated[Path | None, typer.Option(help="Store for the query->ECR curriculum task.")] = None,
    triplets: Annotated[Path | None, typer.Option(help="Text triplets for the caption->caption task.")] = None,
    run_dir: Annotated[Path | None, typer.Option(help="Run folder (default runs/<out name>).")] = None,
    towers: Annotated[str, typer.Option(help="shared (one encoder) or two (query and component towers).")] = "shared",
    curriculum: Annotated[bool, typer.Option(help="GVE modality-pyramid task sampling.")] = False,
    reranker: Annotated[Path | None, typer.Option(
        help="Cross-encoder folder: mine reranker-filtered hard negatives for a second round.")] = None,
    epochs: int = 2,
    batch_size: int = 32,
    lr: float = 3e-5,
    seed: SeedOpt = 0,
) -> None:
    """Train the sub-query / component encoders with the compositional InfoNCE."""
    from twinseek.embedders.data import read_triplets, read_twin_pairs  # lazy: numpy, PIL and the store
    from twinseek.embedders.trainer import TwinTrainConfig, ecr_pairs_from_store, train_twin  # lazy: torch

    if towers not in ("shared", "two"):
        raise typer.BadParameter("--towers must be shared or two")
    cfg = TwinTrainConfig(run_dir=run_dir or Path("runs") / out.name, epochs=epochs, batch_size=batch_size, lr=lr,
                          towers=towers, curriculum=curriculum, seed=seed, progress=True)  # type: ignore[arg-type]
    cross_encoder = None
    if reranker is not None:
        from sentence_transformers import CrossEncoder

        cross_encoder = CrossEncoder(str(reranker), local_files_only=True)
    result = train_twin(read_twin_pairs(data_path), cfg, out,
                        ecr_pairs=ecr_pairs_from_store(store) if store else (),
                        captions=read_triplets(triplets) if triplets else (), cross_encoder=cross_encoder,
                        rounds=2 if cross_encoder is not None else 1)
    typer.echo(f"trained {result.steps} steps, loss {result.first_loss} -> {result.loss:.4f}; saved {out}")
    _print_settings(out)
