"""The media module: mask files, IoU, resizing, frame spreading and overlays, on masks with known answers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from twinseek.media.masks import (
    PALETTE,
    draw_overlay,
    load_mask,
    mask_iou,
    outline,
    overlay_frames,
    resize_image,
    resize_mask,
    save_mask,
    spread,
    write_overlays,
)


def box(shape: tuple[int, int], y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
    mask = np.zeros(shape, bool)
    mask[y0:y1, x0:x1] = True
    return mask


# -- files ------------------------------------------------------------------------------------------------------
def test_save_and_load_round_trip_as_a_one_bit_png(tmp_path: Path) -> None:
    mask = box((20, 30), 2, 9, 5, 25)
    save_mask(tmp_path / "deep" / "m.png", mask)
    with Image.open(tmp_path / "deep" / "m.png") as img:
        assert img.mode == "1"
    loaded = load_mask(tmp_path / "deep" / "m.png")
    assert loaded.dtype == bool and np.array_equal(loaded, mask)


@pytest.mark.parametrize("mode", ["L", "P", "RGB", "RGBA"])
def test_any_non_zero_pixel_is_foreground_whatever_the_png_mode(tmp_path: Path, mode: str) -> None:
    mask = box((8, 8), 1, 4, 2, 6)
    values = mask.astype(np.uint8)  # 0/1: a palette index or a dark label map still counts
    if mode in ("RGB", "RGBA"):
        values = np.stack([values * 0, values * 0, values * 200] + ([np.full_like(values, 255)] if mode == "RGBA"
                                                                     else []), axis=2)
    img = Image.fromarray(values, mode="L" if mode == "P" else None)
    if mode == "P":
        img = img.convert("P")
    img.save(tmp_path / "m.png")
    assert np.array_equal(load_mask(tmp_path / "m.png"), mask)


# -- IoU --------------------------------------------------------------------------------------------------------
def test_iou_of_known_shapes() -> None:
    a = box((10, 10), 0, 10, 0, 5)  # left half: 50 px
    b = box((10, 10), 0, 10, 0, 10)  # everything: 100 px
    c = box((10, 10), 0, 5, 0, 10)  # top half: 50 px, 25 shared with a
    assert mask_iou(a, b) == pytest.approx(0.5)
    assert mask_iou(a, c) == pytest.approx(25 / 75)
    assert mask_iou(a, a) == 1.0
    assert mask_iou(a, box((10, 10), 0, 10, 5, 10)) == 0.0  # disjoint


def test_iou_of_two_empty_masks_follows_the_given_convention() -> None:
    empty = np.zeros((4, 4), bool)
    assert mask_iou(empty, empty) == 1.0  # DAVIS: nothing to find, nothing found
    assert mask_iou(empty, empty, empty=0.0) == 0.0
    assert mask_iou(empty, box((4, 4), 0, 1, 0, 1)) == 0.0


def test_iou_refuses_masks_of_different_shapes() -> None:
    with pytest.raises(ValueError, match="shapes differ"):
        mask_iou(np.zeros((4, 4), bool), np.zeros((4, 5), bool))


# -- resizing ---------------------------------------------------------------------------------------------------
def test_nearest_resize_round_trips_an_integer_upscale_exactly() -> None:
    mask = box((6, 8), 1, 4, 2, 7)
    up = resize_mask(mask, (12, 16))
    assert up.dtype == bool and up.shape == (12, 16)
    assert up.sum() == mask.sum() * 4  # every pixel became a 2x2 block
    assert np.array_equal(resize_mask(up, (6, 8)), mask)
    assert np.array_equal(resize_mask(mask, (6, 8, 3)), mask)  # a frame's shape works; same size: unchanged


def test_resize_mask_accepts_uint8_masks_and_paths(tmp_path: Path) -> None:
    mask = box((4, 4), 0, 2, 0, 2)
    save_mask(tmp_path / "m.png", mask)
    assert resize_mask(tmp_path / "m.png", (8, 8)).sum() == 16  # type: ignore[arg-type]
    assert resize_mask(mask.astype(np.uint8) * 255, (2, 2)).tolist() == [[True, False], [False, False]]


def test_resize_image_is_bilinear_rgb() -> None:
    img = np.zeros((4, 4, 3), np.uint8)
    img[:, 2:] = 200
    out = resize_image(img, (8, 8))
    assert out.shape == (8, 8, 3) and out.dtype == np.uint8
    assert 0 < out[0, 3, 0] < 200  # a blended column between the halves
    assert resize_image(img, (4, 4)) is img


# -- spreading --------------------------------------------------------------------------------------------------
def test_spread_keeps_ends_and_spaces_evenly() -> None:
    assert spread(10, 4) == [0, 3, 6, 9]
    assert spread(9, 3) == [0, 4, 8]
    assert spread(100, 2) == [0, 99]


def test_spread_is_safe_for_one_and_for_more_than_there_are() -> None:
    assert spread(10, 1) == [0]
    assert spread(3, 8) == [0, 1, 2]
    assert spread(3, 3) == [0, 1, 2]
    assert spread(0, 4) == [] and spread(1, 1) == [0]
    with pytest.raises(ValueError):
        spread(5, 0)


# -- overlays ---------------------------------------------------------------------------------------------------
def test_draw_overlay_tints_inside_outlines_the_edge_and_leaves_the_rest() -> None:
    frame = np.full((10, 10, 3), 100, np.uint8)
    mask = box((10, 10), 2, 8, 2, 8)
    out = draw_overlay(frame, {1: mask})
    colour = np.array(PALETTE[1])
    assert np.array_equal(out[2, 2], colour)  # the outline has the object's colour
    inner = out[5, 5].astype(int)
    assert np.all(np.abs(inner - (0.55 * 100 + 0.45 * colour)) <= 1)
    assert np.array_equal(out[0, 0], frame[0, 0]) and out.dtype == np.uint8
    assert outline(mask).sum() == 6 * 4 - 4
    # a mask at another size is fitted to the frame; a sequence colours by position
    small = draw_overlay(frame, [resize_mask(mask, (5, 5))])
    assert np.array_equal(small[2, 2], np.array(PALETTE[0]))


def test_overlay_frames_with_one_frame_and_a_missing_video(tmp_path: Path) -> None:
    masks = {f: {0: box((12, 16), 2, 6, 3, 9), 1: box((12, 16), 7, 11, 8, 15)} for f in (0, 5, 10, 15)}
    one = overlay_frames(tmp_path / "missing.mp4", masks, max_frames=1)  # used to divide by max_frames - 1
    assert [f for f, _ in one] == [0] and one[0][1].shape == (12, 16, 3)
    assert overlay_frames(None, masks, max_frames=3)[1][0] == 10  # spread over 0, 5, 10, 15
    assert [f for f, _ in overlay_frames(None, masks, max_frames=10)] == [0, 5, 10, 15]
    assert overlay_frames(None, {}, max_frames=4) == [] and overlay_frames(None, {3: {}}, max_frames=4) == []
    written = write_overlays(one, tmp_path / "out", gif=tmp_path / "out.gif")
    assert [p.name for p in written] == ["f000000.png", "out.gif"]
    with Image.open(written[0]) as img:
        assert img.size == (16, 12)


def test_overlay_frames_decodes_the_video_at_the_masks_size(tmp_path: Path) -> None:
    from support.synthetic import Scene, write_video

    scene = Scene()
    video = write_video(tmp_path / "clip.mp4", scene)
    mask = box((scene.height, scene.width), 0, 4, 0, 4)
    [(f, image)] = overlay_frames(video, {3: {0: mask}}, max_frames=2)
    assert f == 3 and image.shape == (scene.height, scene.width, 3)
    assert image[scene.height // 2, scene.width // 2].any()  # a decoded frame, not the black fallback
