"""Reference preprocessing (nanodet v0.4.2): keep-ratio warp centred into the input, BGR, mean/std, NCHW."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from contracts.errors import UserError


IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


def list_images(folder: str | Path) -> list[Path]:
    """The images of a folder (sorted), or the one image a file path names; a one-line error otherwise."""
    folder = Path(folder)
    if folder.is_file() and folder.suffix.lower() in IMAGE_SUFFIXES:
        return [folder]
    if not folder.is_dir():
        raise UserError(f"--images {folder}: folder not found")
    paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not paths:
        raise UserError(f"--images {folder}: no images ({', '.join(IMAGE_SUFFIXES)}) in the folder")
    return paths


def read_image(path: str | Path) -> np.ndarray:
    """BGR uint8 image, or a one-line error naming the file."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: image file not found")
    data = np.fromfile(str(path), dtype=np.uint8)
    img = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if img is None:
        raise UserError(f"{path}: cannot be read as an image (corrupt or not an image format OpenCV decodes)")
    return img


def warp_matrix(src_wh: tuple[int, int], dst_wh: tuple[int, int], keep_ratio: bool = True) -> np.ndarray:
    """3x3 matrix T @ S @ C mapping image pixels to input-tensor pixels."""
    (rw, rh), (dw, dh) = src_wh, dst_wh
    scale = np.eye(3)
    if not keep_ratio:
        scale[0, 0], scale[1, 1] = dw / rw, dh / rh
        return scale
    centre = np.eye(3)
    centre[0, 2], centre[1, 2] = -rw / 2, -rh / 2
    ratio = dh / rh if rw / rh < dw / dh else dw / rw
    scale[0, 0] = scale[1, 1] = ratio
    move = np.eye(3)
    move[0, 2], move[1, 2] = dw / 2, dh / 2
    return move @ scale @ centre


def preprocess(img_bgr: np.ndarray, input_wh: tuple[int, int], mean, std, keep_ratio: bool = True):
    """Return (tensor [1, 3, h, w] float32, warp matrix 3x3)."""
    h, w = img_bgr.shape[:2]
    m = warp_matrix((w, h), input_wh, keep_ratio)
    warped = cv2.warpPerspective(img_bgr, m, dsize=tuple(input_wh), borderValue=(0, 0, 0))
    x = (warped.astype(np.float32) - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return np.ascontiguousarray(x.transpose(2, 0, 1)[None]), m


def preprocess_file(path, cfg):
    """Read and preprocess one image for a config; returns (tensor, warp matrix, (h, w) of the image)."""
    img = read_image(path)
    x, m = preprocess(img, cfg.input_size, cfg.mean, cfg.std, cfg.keep_ratio)
    return x, m, img.shape[:2]
