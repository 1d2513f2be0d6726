"""Procedural cel-animation shots with exact ground truth: colour frames, binary line art and region labels.

A shot is a seeded scene of flat-colour regions bounded by dark lines, built to stress what LVCD is for:

- a background of 2-4 regions (bands with wavy borders, sometimes a large disc such as a sun or a hill) that a
  camera pan scrolls;
- 3-8 objects (ellipses, polygons, stars, blobs), about half of them two-tone (a body with a differently coloured
  part: a band like a collar or a belt, a cap like a sleeve end, or a spot), that translate (up to a third of the
  frame over a 45-frame shot), rotate, scale, pass in front of each other, and sometimes enter the frame from
  outside, partly visible in the reference (the paper's stated failure case).

Every frame comes with its line art (exactly the boundaries between regions: a pixel is a line when its label
differs from its right or lower neighbour; binary, 0 on the lines and 255 on the paper, dark lines on white like
the official sketches) and its region label map (a label per pixel, line pixels included; labels are stable across
the frames of a shot, so region ``k`` is the same surface in every frame). The colour frame is the region colours
with the lines painted dark, so no colour leaks into the line art and no line is missing from the colour frame.

Shots have any length and size; the random choices are a function of the seed alone (motion is defined per frame
index, so the first 45 frames of a 105-frame shot equal the 45-frame shot of the same seed). Seeds of the splits
are disjoint ranges (``SPLIT_SEEDS``): training shots never coincide with the held-out benchmark.

    >>> shot = synth_shot(seed=10_000_000, num_frames=45, size_hw=(128, 128))
    >>> shot.frames.shape, shot.lineart.shape, shot.labels.shape
    ((45, 128, 128, 3), (45, 128, 128), (45, 128, 128))
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

LINE_RGB = (24, 22, 30)  # the ink colour of the lines in the colour frames
ANGLES = 360  # samples of a shape's radius function r(theta)

# First seed of each split; a split holds at most SPLIT_CAPACITY shots, so the ranges never overlap.
SPLIT_CAPACITY = 10_000_000
SPLIT_SEEDS = {"train": 0, "heldout": 10_000_000, "long": 20_000_000}
# The fixed held-out benchmark (issue #13): 24 shots of 45 frames, and 8 long shots of 105 frames.
BENCHMARK_SPLITS = {"heldout": (24, 45), "long": (8, 105)}
REFERENCE_FRAMES = 45  # motion amplitudes are stated for a shot of this length


@dataclass(frozen=True)
class SyntheticShot:
    """One generated shot. ``frames`` (N, H, W, 3) uint8; ``lineart`` (N, H, W) uint8, 0 = line, 255 = paper;
    ``labels`` (N, H, W) uint16 region ids (stable over the shot); ``palette`` (regions, 3) uint8 colour of each id."""

    seed: int
    frames: np.ndarray
    lineart: np.ndarray
    labels: np.ndarray
    palette: np.ndarray

    @property
    def num_frames(self) -> int:
        return self.frames.shape[0]

    @property
    def line_mask(self) -> np.ndarray:
        """(N, H, W) bool, True on the lines."""
        return self.lineart < 128


def split_seed(split: str, index: int) -> int:
    """The seed of shot ``index`` of a split (``train``, ``heldout``, ``long``)."""
    if split not in SPLIT_SEEDS:
        raise ValueError(f"Unknown split {split!r}; choose from {', '.join(SPLIT_SEEDS)}.")
    if not 0 <= index < SPLIT_CAPACITY:
        raise ValueError(f"Shot index {index} is outside 0..{SPLIT_CAPACITY - 1}.")
    return SPLIT_SEEDS[split] + index


# ---------------------------------------------------------------------------------------------- shapes


def _polygon_radii(vertex_angles: np.ndarray, vertex_radii: np.ndarray) -> np.ndarray:
    """r(theta) at ANGLES samples of a polygon that is star-shaped around the origin (vertices sorted by angle)."""
    theta = np.linspace(0, 2 * np.pi, ANGLES, endpoint=False)
    px, py = vertex_radii * np.cos(vertex_angles), vertex_radii * np.sin(vertex_angles)
    qx, qy = np.roll(px, -1), np.roll(py, -1)
    radii = np.full(ANGLES, np.inf)
    dx, dy = np.cos(theta)[:, None], np.sin(theta)[:, None]
    ex, ey = (qx - px)[None], (qy - py)[None]
    denominator = dx * ey - dy * ex  # ray (t d) meets edge (p + s e): solve t d = p + s e
    with np.errstate(divide="ignore", invalid="ignore"):
        t = (px[None] * ey - py[None] * ex) / denominator
        s = (px[None] * dy - py[None] * dx) / denominator
    valid = (t > 0) & (s >= -1e-9) & (s <= 1 + 1e-9) & np.isfinite(t)
    radii = np.where(valid, t, np.inf).min(axis=1)
    return np.where(np.isfinite(radii), radii, vertex_radii.min())


def _shape_radii(kind: str, rng: np.random.Generator) -> np.ndarray:
    """r(theta) of a unit-size shape of the given kind (max radius about 1)."""
    theta = np.linspace(0, 2 * np.pi, ANGLES, endpoint=False)
    if kind == "ellipse":
        a, b = 1.0, rng.uniform(0.5, 1.0)
        return a * b / np.sqrt((b * np.cos(theta)) ** 2 + (a * np.sin(theta)) ** 2)
    if kind == "polygon":
        sides = int(rng.integers(3, 8))
        angles = np.sort((np.arange(sides) + rng.uniform(-0.25, 0.25, sides)) * 2 * np.pi / sides)
        return _polygon_radii(angles, rng.uniform(0.75, 1.0, sides))
    if kind == "star":
        points = int(rng.integers(4, 8))
        angles = np.arange(2 * points) * np.pi / points
        radii = np.where(np.arange(2 * points) % 2 == 0, 1.0, rng.uniform(0.4, 0.6))
        return _polygon_radii(angles, radii)
    if kind == "blob":
        radii = np.ones(ANGLES)
        for k in range(2, 5):
            radii += rng.uniform(0.05, 0.18) * np.cos(k * theta + rng.uniform(0, 2 * np.pi))
        return radii / radii.max()
    raise ValueError(f"Unknown shape kind {kind!r}")


SHAPE_KINDS = ("ellipse", "polygon", "star", "blob")
PART_KINDS = ("band", "cap", "spot")


@dataclass(frozen=True)
class _Object:
    radii: np.ndarray  # (ANGLES,) unit shape
    size: float  # radius in pixels at scale 1
    stretch: tuple[float, float]  # local x/y stretch
    center: tuple[float, float]  # (x, y) pixels at frame 0 (world or screen, see `in_world`)
    amplitude: tuple[float, float]  # sinusoidal motion amplitude (x, y) in pixels
    omega: tuple[float, float]  # angular frequency per frame (x, y)
    phase: tuple[float, float]
    drift: tuple[float, float]  # linear motion in pixels per frame
    angle: float  # rotation at frame 0 (radians)
    spin: float  # radians per frame
    scale_amplitude: float
    scale_omega: float
    scale_phase: float
    in_world: bool  # moves with the background under the camera pan
    part: str | None  # two-tone part kind
    part_params: tuple[float, ...]

    def position(self, t: float) -> tuple[float, float]:
        return tuple(
            c + a * (math.sin(w * t + p) - math.sin(p)) + d * t
            for c, a, w, p, d in zip(self.center, self.amplitude, self.omega, self.phase, self.drift, strict=True)
        )

    def scale(self, t: float) -> float:
        return 1.0 + self.scale_amplitude * (
            math.sin(self.scale_omega * t + self.scale_phase) - math.sin(self.scale_phase)
        )


@dataclass(frozen=True)
class _Scene:
    bands: tuple[tuple[float, float, float, float], ...]  # background borders y = h + a sin(f x + p), top to bottom
    disc: tuple[float, float, float] | None  # a background disc (x, y, radius) in world pixels, or None
    pan: tuple[float, float]  # camera velocity (x, y) in pixels per frame
    objects: tuple[_Object, ...]
    palette: np.ndarray  # (regions, 3) uint8


def _distinct_palette(count: int, rng: np.random.Generator, min_distance: float = 0.25) -> np.ndarray:
    """``count`` colours, pairwise at least ``min_distance`` apart (RGB L2 in [0, 1]) and far from the ink."""
    ink = np.array(LINE_RGB) / 255
    colours: list[np.ndarray] = []
    distance = min_distance
    while len(colours) < count:
        for _ in range(200):
            hue, saturation, value = rng.uniform(0, 1), rng.uniform(0.25, 0.9), rng.uniform(0.5, 1.0)
            candidate = _hsv_to_rgb(hue, saturation, value)
            if np.linalg.norm(candidate - ink) < 0.45:
                continue
            if all(np.linalg.norm(candidate - c) >= distance for c in colours):
                colours.append(candidate)
                break
        else:
            distance *= 0.9  # many regions: relax rather than loop forever
    return np.round(np.stack(colours) * 255).astype(np.uint8)


def _hsv_to_rgb(h: float, s: float, v: float) -> np.ndarray:
    i = int(h * 6) % 6
    f = h * 6 - int(h * 6)
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    return np.array([(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i])


def _make_object(rng: np.random.Generator, height: int, width: int, entering: bool) -> _Object:
    side = min(height, width)
    size = side * rng.uniform(0.09, 0.22)
    omega = tuple(rng.uniform(0.5, 1.5) * math.pi / REFERENCE_FRAMES for _ in range(2))
    # Up to a third of the frame over a reference-length shot: amplitude * 2 (a half period) or less.
    amplitude = tuple(rng.uniform(0.0, 1.0) * dim / 6 for dim in (width, height))
    phase = tuple(rng.uniform(0, 2 * math.pi) for _ in range(2))
    drift = (0.0, 0.0)
    if entering:  # start just outside one edge, centre out of view, and drift inwards
        edge = int(rng.integers(4))
        inside = rng.uniform(0.25, 0.75)
        offset = size * rng.uniform(0.2, 0.7)
        x, y = [(-offset, inside * height), (width + offset, inside * height), (inside * width, -offset),
                (inside * width, height + offset)][edge]  # fmt: skip
        speed = side / 3 / REFERENCE_FRAMES * rng.uniform(0.7, 1.0)
        drift = [(speed, 0.0), (-speed, 0.0), (0.0, speed), (0.0, -speed)][edge]
        amplitude = (amplitude[0] / 3, amplitude[1] / 3)
        center = (x, y)
    else:
        center = (rng.uniform(0.1, 0.9) * width, rng.uniform(0.1, 0.9) * height)
    part = PART_KINDS[int(rng.integers(len(PART_KINDS)))] if rng.uniform() < 0.5 else None
    if part == "band":
        low = rng.uniform(-0.5, 0.3)
        part_params: tuple[float, ...] = (low, low + rng.uniform(0.25, 0.45))
    elif part == "cap":
        part_params = (rng.uniform(0.15, 0.5),)
    elif part == "spot":
        part_params = (rng.uniform(-0.35, 0.35), rng.uniform(-0.35, 0.35), rng.uniform(0.25, 0.4))
    else:
        part_params = ()
    return _Object(
        radii=_shape_radii(SHAPE_KINDS[int(rng.integers(len(SHAPE_KINDS)))], rng),
        size=size,
        stretch=(rng.uniform(0.8, 1.25), rng.uniform(0.8, 1.25)),
        center=center,
        amplitude=amplitude,
        omega=omega,
        phase=phase,
        drift=drift,
        angle=rng.uniform(0, 2 * math.pi),
        spin=rng.choice([-1, 1]) * rng.uniform(0.0, 1.5) * math.pi / REFERENCE_FRAMES,
        scale_amplitude=rng.uniform(0.0, 0.25),
        scale_omega=rng.uniform(0.5, 1.5) * math.pi / REFERENCE_FRAMES,
        scale_phase=rng.uniform(0, 2 * math.pi),
        in_world=bool(rng.uniform() < 0.35),
        part=part,
        part_params=part_params,
    )


def _make_scene(rng: np.random.Generator, height: int, width: int) -> _Scene:
    num_background = int(rng.integers(2, 5))
    has_disc = num_background >= 3 and rng.uniform() < 0.5
    num_bands = num_background - 1 - int(has_disc)
    heights = np.sort(rng.uniform(0.2, 0.85, num_bands)) * height
    bands = tuple(
        (float(h), rng.uniform(0.02, 0.08) * height, rng.uniform(0.5, 2.5) * 2 * math.pi / width, rng.uniform(0, 6.3))
        for h in heights
    )
    disc = (rng.uniform(0.1, 0.9) * width, rng.uniform(0.1, 0.5) * height, rng.uniform(0.12, 0.3) * min(height, width))
    pan_speed = rng.uniform(0.0, 0.25) * width / REFERENCE_FRAMES if rng.uniform() < 0.6 else 0.0
    pan_angle = rng.uniform(-0.4, 0.4) + (math.pi if rng.uniform() < 0.5 else 0.0)
    num_objects = int(rng.integers(3, 9))
    entering = int(rng.integers(num_objects)) if rng.uniform() < 0.5 else -1
    objects = tuple(_make_object(rng, height, width, entering=i == entering) for i in range(num_objects))
    num_regions = num_background + sum(1 + (o.part is not None) for o in objects)
    return _Scene(
        bands=bands,
        disc=disc if has_disc else None,
        pan=(pan_speed * math.cos(pan_angle), pan_speed * math.sin(pan_angle) * 0.3),
        objects=objects,
        palette=_distinct_palette(num_regions, rng),
    )


# ---------------------------------------------------------------------------------------------- rendering


def _render_labels(scene: _Scene, t: int, height: int, width: int) -> np.ndarray:
    """(H, W) uint16 labels of frame t: background regions first, then each object (and its part) in z order."""
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64) + 0.5
    pan_x, pan_y = scene.pan[0] * t, scene.pan[1] * t
    wx, wy = xs + pan_x, ys + pan_y  # world coordinates of the pixels
    labels = np.zeros((height, width), dtype=np.uint16)
    for h, a, f, p in scene.bands:
        labels += (wy > h + a * np.sin(f * wx + p)).astype(np.uint16)
    next_label = len(scene.bands) + 1
    if scene.disc is not None:
        cx, cy, r = scene.disc
        labels[(wx - cx) ** 2 + (wy - cy) ** 2 < r**2] = next_label
        next_label += 1
    for obj in scene.objects:
        x, y = obj.position(t)
        if obj.in_world:
            x, y = x - pan_x, y - pan_y
        angle = obj.angle + obj.spin * t
        size = obj.size * obj.scale(t)
        cos, sin = math.cos(angle), math.sin(angle)
        dx, dy = xs - x, ys - y
        u = (cos * dx + sin * dy) / (size * obj.stretch[0])  # local, rotated, unit-size coordinates
        v = (-sin * dx + cos * dy) / (size * obj.stretch[1])
        rho = np.hypot(u, v)
        index = ((np.arctan2(v, u) % (2 * np.pi)) / (2 * np.pi) * ANGLES).astype(np.int64) % ANGLES
        inside = rho < obj.radii[index]
        labels[inside] = next_label
        if obj.part is not None:
            if obj.part == "band":
                low, high = obj.part_params
                part = inside & (v > low) & (v < high)
            elif obj.part == "cap":
                part = inside & (v > 1 - 2 * obj.part_params[0])
            else:
                su, sv, sr = obj.part_params
                part = inside & ((u - su) ** 2 + (v - sv) ** 2 < sr**2)
            labels[part] = next_label + 1
        next_label += 1 + (obj.part is not None)
    return labels


def line_mask_of(labels: np.ndarray, width: int = 1) -> np.ndarray:
    """Boundaries of a label map (..., H, W): a pixel is a line when its label differs from its right or lower
    neighbour; ``width`` > 1 thickens the lines towards the lower right."""
    lines = np.zeros(labels.shape, dtype=bool)
    lines[..., :, :-1] |= labels[..., :, :-1] != labels[..., :, 1:]
    lines[..., :-1, :] |= labels[..., :-1, :] != labels[..., 1:, :]
    for _ in range(width - 1):
        grown = lines.copy()
        grown[..., :, 1:] |= lines[..., :, :-1]
        grown[..., 1:, :] |= lines[..., :-1, :]
        lines = grown
    return lines


def default_line_width(size_hw: tuple[int, int]) -> int:
    """1 px up to 191 px frames, then one more per 128 px (thin lines like the official sketches at 320x576)."""
    return max(1, round(min(size_hw) / 128))


def synth_shot(
    seed: int, num_frames: int = REFERENCE_FRAMES, size_hw: tuple[int, int] = (128, 128), line_width: int | None = None
) -> SyntheticShot:
    """Generate one shot; the same seed gives the same shot (and a longer shot extends a shorter one)."""
    height, width = (int(s) for s in size_hw)
    if num_frames < 1 or height < 16 or width < 16:
        raise ValueError(
            f"A synthetic shot needs at least 1 frame of at least 16x16 pixels, got {num_frames} of {height}x{width}."
        )
    rng = np.random.default_rng(seed)
    # Geometry is drawn relative to the frame size, so a seed gives the same composition at every size.
    scene = _make_scene(rng, height, width)
    labels = np.stack([_render_labels(scene, t, height, width) for t in range(num_frames)])
    lines = line_mask_of(labels, line_width or default_line_width(size_hw))
    frames = scene.palette[labels]
    frames[lines] = LINE_RGB
    lineart = np.where(lines, 0, 255).astype(np.uint8)
    return SyntheticShot(seed=seed, frames=frames, lineart=lineart, labels=labels, palette=scene.palette)


def benchmark_shots(split: str = "heldout", size_hw: tuple[int, int] = (128, 128)) -> list[SyntheticShot]:
    """The fixed held-out benchmark: ``heldout`` (24 shots of 45 frames) or ``long`` (8 shots of 105 frames)."""
    if split not in BENCHMARK_SPLITS:
        raise ValueError(f"Benchmark split must be one of {', '.join(BENCHMARK_SPLITS)}, got {split!r}.")
    count, frames = BENCHMARK_SPLITS[split]
    return [synth_shot(split_seed(split, i), frames, size_hw) for i in range(count)]
