"""Tiny random-weight paper-tier models for offline tests.

Each builder constructs a model from a config (random weights, a few hundred kB), saves it with its
processor exactly as a hub checkpoint is laid out, and returns the path to load it from. The numbers it
produces are meaningless: tests use these to exercise the real loading, pre- and post-processing.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path

import torch
from PIL import Image

SAM2_TINY_CONFIG = "configs/sam2.1/sam2.1_hiera_t.yaml"
SAM2_TINY_OVERRIDES = [
    "++model.image_size=256",
    "++model.image_encoder.trunk.embed_dim=16",
    "++model.image_encoder.trunk.stages=[1,1,2,1]",
    "++model.image_encoder.trunk.global_att_blocks=[3]",
    "++model.image_encoder.neck.backbone_channel_list=[128,64,32,16]",
    "++model.memory_attention.num_layers=1",
    "++model.memory_attention.layer.self_attention.feat_sizes=[16,16]",
    "++model.memory_attention.layer.cross_attention.feat_sizes=[16,16]",
]

QWEN_SPECIAL = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
]
# The shape of Qwen2-VL's chat template, reduced to text, image and video parts.
QWEN_CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif part['type'] == 'video' %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}{% endfor %}{% endif %}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def byte_chars() -> list[str]:
    """GPT-2/CLIP byte-to-unicode table: the vocabulary of a merge-free byte-level BPE tokenizer."""
    bs = [*range(33, 127), *range(161, 173), *range(174, 256)]
    cs = bs[:]
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + len(cs) - 188)
    return [chr(c) for c in cs]


def seeded(build: Callable[[Path | str], Path]) -> Callable[[Path | str], Path]:
    """Same weights on every run (so test outcomes do not vary), without disturbing the global RNG."""

    @functools.wraps(build)
    def wrapper(directory: Path | str) -> Path:
        with torch.random.fork_rng():
            torch.manual_seed(0)
            return build(directory)

    return wrapper


def _dir(directory: Path | str) -> Path:
    path = Path(directory)
    path.mkdir(parents=True, exist_ok=True)
    return path


@seeded
def build_tiny_owlv2(directory: Path | str) -> Path:
    from transformers import (
        CLIPTokenizer,
        Owlv2Config,
        Owlv2ForObjectDetection,
        Owlv2ImageProcessor,
        Owlv2Processor,
    )

    path = _dir(directory)
    chars = byte_chars()
    vocab = {c: i for i, c in enumerate(chars + [c + "</w>" for c in chars])}
    vocab |= {"<|startoftext|>": 512, "<|endoftext|>": 513}  # BOS id must be > 0: OWL masks queries on id > 0
    processor = Owlv2Processor(
        image_processor=Owlv2ImageProcessor(size={"height": 64, "width": 64}),
        tokenizer=CLIPTokenizer(vocab=vocab, merges=[], model_max_length=16),
    )
    config = Owlv2Config(
        projection_dim=32,
        text_config=dict(
            vocab_size=514,
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            max_position_embeddings=16,
            bos_token_id=512,
            eos_token_id=513,
            pad_token_id=513,
        ),
        vision_config=dict(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            image_size=64,
            patch_size=16,
        ),
    )
    model = Owlv2ForObjectDetection(config)
    with torch.no_grad():  # a random box head saturates to degenerate boxes; keep OWL's per-patch prior boxes
        model.box_head.dense2.weight.mul_(0.01)
        model.box_head.dense2.bias.zero_()
    model.save_pretrained(path)
    processor.save_pretrained(path)
    return path


@seeded
def build_tiny_depth_anything(directory: Path | str) -> Path:
    from transformers import (
        DepthAnythingConfig,
        DepthAnythingForDepthEstimation,
        Dinov2Config,
        DPTImageProcessor,
    )

    path = _dir(directory)
    backbone = Dinov2Config(
        hidden_size=32,
        num_hidden_layers=4,
        num_attention_heads=2,
        intermediate_size=64,
        patch_size=14,
        image_size=56,
        out_indices=[1, 2, 3, 4],
        reshape_hidden_states=False,
    )
    config = DepthAnythingConfig(
        backbone_config=backbone,
        reassemble_hidden_size=32,
        neck_hidden_sizes=[8, 16, 32, 32],
        fusion_hidden_size=16,
        head_hidden_size=8,
    )
    processor = DPTImageProcessor(  # the real Depth Anything V2 uses 518 instead of 56
        size={"height": 56, "width": 56},
        keep_aspect_ratio=True,
        ensure_multiple_of=14,
        resample=Image.BICUBIC,
        do_pad=False,
    )
    model = DepthAnythingForDepthEstimation(config)
    with torch.no_grad():  # a random head often ends all-negative, and its final ReLU then gives a flat map
        model.head.conv3.weight.abs_()
    model.save_pretrained(path)
    processor.save_pretrained(path)
    return path


@torch.no_grad()
def _say_present(object_score_bias: torch.Tensor) -> None:
    """Random SAM-2 weights usually call every object absent (all-empty masks); bias the object-score head
    so masks come out non-empty and the tracking plumbing is exercised."""
    object_score_bias.fill_(10.0)


@seeded
def build_tiny_sam2_checkpoint(directory: Path | str) -> Path:
    """A ``.pt`` for the ``sam2`` package; load it with ``SAM2_TINY_CONFIG`` and ``SAM2_TINY_OVERRIDES``."""
    from sam2.build_sam import build_sam2_video_predictor

    checkpoint = _dir(directory) / "sam2_tiny.pt"
    predictor = build_sam2_video_predictor(
        SAM2_TINY_CONFIG, None, device="cpu", hydra_overrides_extra=SAM2_TINY_OVERRIDES
    )
    head = predictor.sam_mask_decoder.pred_obj_score_head
    _say_present((head.layers[-1] if hasattr(head, "layers") else head).bias)
    torch.save({"model": predictor.state_dict()}, checkpoint)
    return checkpoint


@seeded
def build_tiny_sam2_hf(directory: Path | str) -> Path:
    from transformers import (
        Sam2ImageProcessor,
        Sam2VideoConfig,
        Sam2VideoModel,
        Sam2VideoProcessor,
        Sam2VideoVideoProcessor,
    )

    path = _dir(directory)
    size, hidden = 128, 128  # real: 1024 px, 256 hidden; hidden must exceed the hard-coded memory dim 64
    backbone = dict(
        model_type="sam2_hiera_det_model",
        image_size=[size, size],
        hidden_size=16,
        blocks_per_stage=[1, 1, 2, 1],
        embed_dim_per_stage=[16, 32, 64, 128],
        num_attention_heads_per_stage=[1] * 4,
        window_size_per_stage=[4] * 4,
        global_attention_blocks=[3],  # a global-attention block must not open a stage
    )
    config = Sam2VideoConfig(
        image_size=size,
        num_maskmem=3,
        vision_config=dict(
            backbone_config=backbone,
            backbone_channel_list=[128, 64, 32, 16],
            fpn_hidden_size=hidden,
            backbone_feature_sizes=[[size // 4] * 2, [size // 8] * 2, [size // 16] * 2],
        ),
        prompt_encoder_config=dict(hidden_size=hidden, image_size=size),
        mask_decoder_config=dict(
            hidden_size=hidden, mlp_dim=64, num_attention_heads=2, iou_head_hidden_dim=hidden
        ),
        memory_attention_hidden_size=hidden,
        memory_attention_num_layers=1,
        memory_attention_feed_forward_hidden_size=64,
        memory_attention_rope_feat_sizes=[size // 16] * 2,
        memory_encoder_hidden_size=hidden,
        mask_downsampler_embed_dim=hidden,
        memory_fuser_embed_dim=hidden,
        memory_fuser_intermediate_dim=64,
    )
    processor = Sam2VideoProcessor(
        Sam2ImageProcessor(
            size={"height": size, "width": size}, mask_size={"height": size // 4, "width": size // 4}
        ),
        Sam2VideoVideoProcessor(size={"height": size, "width": size}),
    )
    model = Sam2VideoModel(config)
    _say_present(model.mask_decoder.pred_obj_score_head.proj_out.bias)
    model.save_pretrained(path)
    processor.save_pretrained(path)
    return path


@seeded
def build_tiny_qwen2vl(directory: Path | str) -> Path:
    from transformers import (
        Qwen2Tokenizer,
        Qwen2VLConfig,
        Qwen2VLForConditionalGeneration,
        Qwen2VLImageProcessor,
        Qwen2VLProcessor,
        Qwen2VLVideoProcessor,
    )

    path = _dir(directory)
    vocab = {c: i for i, c in enumerate(byte_chars() + QWEN_SPECIAL)}
    pixels = dict(min_pixels=28 * 28, max_pixels=56 * 84)
    processor = Qwen2VLProcessor(
        tokenizer=Qwen2Tokenizer(vocab=vocab, merges=[], extra_special_tokens=QWEN_SPECIAL[1:]),
        image_processor=Qwen2VLImageProcessor(**pixels),
        video_processor=Qwen2VLVideoProcessor(**pixels, cap_pixels_per_frame=True),
        chat_template=QWEN_CHAT_TEMPLATE,
    )
    config = Qwen2VLConfig(
        vision_config=dict(depth=2, embed_dim=32, hidden_size=32, num_heads=2, mlp_ratio=2),
        text_config=dict(
            vocab_size=len(vocab),
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            num_key_value_heads=1,
            bos_token_id=vocab["<|endoftext|>"],
            eos_token_id=vocab["<|im_end|>"],
            pad_token_id=vocab["<|endoftext|>"],
            rope_parameters={
                "rope_type": "default",
                "rope_theta": 1e4,
                "mrope_section": [2, 3, 3],
            },  # = head_dim/2
        ),
        image_token_id=vocab["<|image_pad|>"],
        video_token_id=vocab["<|video_pad|>"],
        vision_start_token_id=vocab["<|vision_start|>"],
        vision_end_token_id=vocab["<|vision_end|>"],
    )
    Qwen2VLForConditionalGeneration(config).save_pretrained(path)
    processor.save_pretrained(path)
    return path


def _tiny_bert_vocab(out: Path) -> int:
    """A word-piece vocabulary of a few words plus every letter and digit (any text tokenizes), saved to ``out``."""
    from transformers import BertTokenizer

    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *"the a dog red car park where is swan black".split()]
    words += list("abcdefghijklmnopqrstuvwxyz0123456789") + ["##" + c for c in "abcdefghijklmnopqrstuvwxyz0123456789"]
    # vocab= (not vocab_file=, which transformers 5 silently ignores)
    BertTokenizer(vocab={w: i for i, w in enumerate(words)}, model_max_length=64).save_pretrained(out)
    return len(words)


@seeded
def build_tiny_sentence_transformer(directory: Path | str) -> Path:
    """A 2-layer BERT with mean pooling, saved as a sentence-transformers folder (a bi-encoder to train)."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.base.modules import Transformer
    from sentence_transformers.sentence_transformer.modules import Pooling
    from transformers import BertConfig, BertModel

    out = _dir(directory)
    bert = _dir(out / "bert")
    cfg = BertConfig(vocab_size=_tiny_bert_vocab(bert), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=64)
    BertModel(cfg).save_pretrained(bert)
    encoder = Transformer(str(bert), max_seq_length=32)
    model = SentenceTransformer(modules=[encoder, Pooling(encoder.get_embedding_dimension(), "mean")], device="cpu")
    model.save(str(out / "model"))
    return out / "model"


@seeded
def build_tiny_cross_encoder(directory: Path | str) -> Path:
    """A 2-layer BERT sequence classifier with a word-piece vocabulary (sentence-transformers CrossEncoder)."""
    from transformers import BertConfig, BertForSequenceClassification

    out = _dir(directory)
    cfg = BertConfig(vocab_size=_tiny_bert_vocab(out), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=64, num_labels=1)
    BertForSequenceClassification(cfg).save_pretrained(out)
    return out


@seeded
def build_tiny_qwen3_reranker(directory: Path | str) -> Path:
    """A 2-layer Qwen3 causal LM whose vocabulary has the single tokens ``yes`` and ``no``."""
    from transformers import Qwen2Tokenizer, Qwen3Config, Qwen3ForCausalLM

    out = _dir(directory)
    special = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<think>", "</think>"]
    vocab = {c: i for i, c in enumerate(byte_chars() + ["yes", "no"] + special)}
    tok = Qwen2Tokenizer(vocab=vocab, merges=[], extra_special_tokens=special[1:], pad_token="<|endoftext|>")
    tok.save_pretrained(out)
    cfg = Qwen3Config(vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=2, num_key_value_heads=1, head_dim=16, max_position_embeddings=512,
                      pad_token_id=vocab["<|endoftext|>"], eos_token_id=vocab["<|im_end|>"])
    Qwen3ForCausalLM(cfg).save_pretrained(out)
    return out


def assert_placed(module: torch.nn.Module, device: str, dtype: torch.dtype | None = None) -> None:
    """Every parameter of a loaded model sits on ``device`` (by type: ``cuda`` matches ``cuda:0``); with
    ``dtype``, every floating-point parameter has it (half precision on accelerators, float32 on the CPU)."""
    want = torch.device(device).type
    params = list(module.parameters())
    assert params, "the model has no parameters"
    assert {p.device.type for p in params} == {want}
    if dtype is not None:
        assert {p.dtype for p in params if p.is_floating_point()} == {dtype}
