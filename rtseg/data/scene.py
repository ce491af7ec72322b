"""Procedural street scenes with Cityscapes ground truth (label ids and instance ids).

A level pinhole camera looks down a road: the ground plane (road with lanes, kerb strips,
parking, sidewalks, terrain), facades on both sides (buildings with windows, walls, fences,
hedges, gaps), a second row of buildings or trees behind them and a far end are ray-cast
per pixel with a depth test; vehicles (projected 3-D boxes), people, riders, bicycles,
poles, traffic lights and signs, trees and street furniture are painted far to near. Every
image samples its own camera, road, styles, colours, lighting, haze and noise, so class
identity has to be read from appearance and context, not from position.

Why hand-written: no maintained library renders labelled street scenes without a game
engine or a download. Everything is vectorised numpy/cv2 so 100 frames at 512x1024 take
well under a minute on one core (see docs/data.md for the measurement).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from rtseg.data import scene_objects as obj
from rtseg.data.scene_paint import ID, Camera, InstanceCounter, Painter, hsv, jitter


@dataclass
class SceneSample:
    image: np.ndarray  # HxWx3 uint8 RGB
    label_ids: np.ndarray  # HxW uint8 official label ids 0..33
    instance_ids: np.ndarray  # HxW uint16: id*1000+k for instances, the plain id elsewhere


# ------------------------------------------------------------------------------------- styles
def _building_color(rng) -> np.ndarray:
    style = rng.integers(5)
    if style == 0:  # beige, cream
        return hsv(rng.uniform(28, 50), rng.uniform(0.12, 0.4), rng.uniform(0.55, 0.85))
    if style == 1:  # brick
        return hsv(rng.uniform(4, 22), rng.uniform(0.4, 0.65), rng.uniform(0.3, 0.55))
    if style == 2:  # concrete grey
        return hsv(rng.uniform(0, 360), rng.uniform(0, 0.08), rng.uniform(0.35, 0.72))
    if style == 3:  # white render
        return hsv(rng.uniform(0, 360), rng.uniform(0, 0.07), rng.uniform(0.75, 0.9))
    return hsv(rng.uniform(0, 360), rng.uniform(0.15, 0.35), rng.uniform(0.55, 0.82))  # pastel


def _greens(rng, n=4):
    return [hsv(rng.uniform(70, 135), rng.uniform(0.35, 0.75), rng.uniform(0.15, 0.5)) for _ in range(n)]


@dataclass
class _Road:
    half_width: float
    offset: float  # road centre X at Z=0, camera frame
    curve: float  # centre X(Z) = offset + curve * Z^2
    lane_width: float
    lanes: int
    strip: dict  # side (-1/+1) -> (width, label id)
    sidewalk: dict  # side -> width
    verge: dict  # side -> label id of the ground beyond the sidewalk
    front: dict  # side -> lateral distance of the facade line
    back: dict  # side -> lateral distance of the second row
    z_end: float
    rail: float | None  # lateral of the tram track, or None
    crosswalk: tuple[float, float] | None

    def center(self, z):
        return self.offset + self.curve * np.square(z)

    def inner(self, side: int) -> float:  # road edge + strip
        return self.half_width + self.strip[side][0]


def _sample_road(rng) -> _Road:
    lanes = int(rng.choice([2, 2, 3, 4]))
    lane_w = rng.uniform(2.9, 3.6)
    half = lanes * lane_w / 2
    own_lane = rng.integers(lanes // 2, lanes) if rng.random() < 0.85 else rng.integers(lanes)
    offset = -(-half + (own_lane + 0.5) * lane_w) + rng.normal(0, 0.3)
    curve = rng.uniform(-1 / 250, 1 / 250) if rng.random() < 0.6 else 0.0
    strip, sidewalk, verge, front, back = {}, {}, {}, {}, {}
    for side in (-1, 1):
        u = rng.random()
        strip[side] = (rng.uniform(1.0, 3.0), ID["terrain"]) if u < 0.35 else \
            (rng.uniform(2.2, 2.6), ID["parking"]) if u < 0.5 else (0.0, ID["road"])
        sidewalk[side] = rng.uniform(1.8, 5.0)
        verge[side] = rng.choice([ID["terrain"], ID["terrain"], ID["sidewalk"], ID["ground"]])
        front[side] = half + strip[side][0] + sidewalk[side] + rng.uniform(0.0, 0.6)
        back[side] = front[side] + rng.uniform(6, 25)
    rail = None
    if rng.random() < 0.15:
        rail = -half + lane_w * (rng.integers(lanes) + 0.5)
    crosswalk = None
    if rng.random() < 0.35:
        z0 = rng.uniform(8, 30)
        crosswalk = (z0, z0 + rng.uniform(3, 5))
    return _Road(half, offset, curve, lane_w, lanes, strip, sidewalk, verge, front, back,
                 rng.uniform(70, 160), rail, crosswalk)


# ------------------------------------------------------------------------------ vertical planes
def _plane_depth(road: _Road, a: np.ndarray, lateral: float) -> np.ndarray:
    """Depth per column where the ray meets the vertical surface ``lateral`` metres from the
    (curved) road centre: solve curve*Z^2 - a*Z + (offset + lateral) = 0, nearest positive root."""
    c = road.offset + lateral
    with np.errstate(divide="ignore", invalid="ignore"):
        if abs(road.curve) < 1e-9:
            z = np.where(np.abs(a) > 1e-9, c / a, np.inf)
        else:
            disc = a * a - 4 * road.curve * c
            sq = np.sqrt(np.where(disc >= 0, disc, np.nan))
            r1, r2 = (a - sq) / (2 * road.curve), (a + sq) / (2 * road.curve)
            r1 = np.where(r1 > 0.5, r1, np.inf)
            r2 = np.where(r2 > 0.5, r2, np.inf)
            z = np.fmin(r1, r2)
    z = np.where(np.isfinite(z) & (z > 0.5), z, np.inf)
    return z.astype(np.float32)


@dataclass
class _Segments:
    """Pieces of a plane along its length: kind, label, height, colour and window style."""
    bounds: np.ndarray  # n+1 positions along the plane
    kind: np.ndarray  # 0 none, 1 building, 2 wall, 3 fence, 4 vegetation
    height: np.ndarray
    color: np.ndarray  # n x 3
    params: np.ndarray  # n x 8: window pitch, width, floor, window height, ground floor, shop, glass tint, bumpiness

    NONE, BUILDING, WALL, FENCE, VEGETATION = range(5)
    LABEL = np.array([0, ID["building"], ID["wall"], ID["fence"], ID["vegetation"]], np.uint8)

    def at(self, u: np.ndarray) -> np.ndarray:
        return np.clip(np.searchsorted(self.bounds, u) - 1, 0, len(self.kind) - 1)


def _segments(rng, start, stop, probs, heights, greens, wall_color, fence_color) -> _Segments:
    bounds, kinds, hs, colors, params = [start], [], [], [], []
    while bounds[-1] < stop:
        kind = int(rng.choice(5, p=probs))
        length = rng.uniform(6, 26) if kind == _Segments.BUILDING else rng.uniform(4, 18)
        bounds.append(bounds[-1] + length)
        kinds.append(kind)
        lo, hi = heights[kind]
        hs.append(rng.uniform(lo, hi))
        if kind == _Segments.BUILDING:
            colors.append(_building_color(rng))
        elif kind == _Segments.WALL:
            colors.append(jitter(rng, wall_color, 15))
        elif kind == _Segments.FENCE:
            colors.append(jitter(rng, fence_color, 10))
        else:
            colors.append(greens[rng.integers(len(greens))])
        floor = rng.uniform(2.8, 3.6)
        params.append([rng.uniform(2.0, 4.0), rng.uniform(0.3, 0.6), floor, rng.uniform(0.4, 0.65),
                       rng.uniform(3.0, 4.5), float(rng.random() < 0.5), rng.uniform(0, 1),
                       rng.uniform(0.3, 1.5)])
    return _Segments(np.array(bounds), np.array(kinds), np.array(hs), np.array(colors, np.float32),
                     np.array(params, np.float32))


def _bumps(rng, u: np.ndarray, amplitude: np.ndarray, spacing=1.5) -> np.ndarray:
    """A smooth random height profile along the plane (tree tops, hedges)."""
    if u.size == 0:
        return u
    lo, hi = float(np.min(u)) - spacing, float(np.max(u)) + spacing
    knots = np.arange(lo, hi + spacing, spacing)
    return np.interp(u, knots, rng.normal(0, 1, knots.size)) * amplitude


def _frac(x: np.ndarray) -> np.ndarray:
    return x - np.floor(x)  # faster than np.mod for floats


def _column_spans(top: np.ndarray, bottom: np.ndarray, height: int):
    """Pixel (row, index) pairs for rows top..bottom of each column, without an HxW mask."""
    t = np.clip(np.ceil(top - 0.5), 0, height).astype(np.int64)
    b = np.clip(np.floor(bottom - 0.5) + 1, 0, height).astype(np.int64)
    n = np.maximum(b - t, 0)
    total = int(n.sum())
    idx = np.repeat(np.arange(n.size), n)
    start = np.cumsum(n) - n
    rows = np.repeat(t, n) + (np.arange(total) - np.repeat(start, n))
    return rows, idx


def _render_plane(state, rng, depth_col, u_col, seg: _Segments, shade: float, pattern_seed: int) -> None:
    """Ray-cast one vertical plane: per column depth and position along it, per segment its
    kind and height; write the pixels where it is the nearest surface."""
    cam, depth = state["cam"], state["depth"]
    seg_col = seg.at(u_col)
    kind_col = np.where(np.isfinite(depth_col), seg.kind[seg_col], 0)
    cols = np.nonzero(kind_col)[0]
    if cols.size == 0:
        return
    zc, sc = depth_col[cols], seg_col[cols]
    height = seg.height[sc]
    bumpy = seg.kind[sc] == _Segments.VEGETATION
    if bumpy.any():
        height = height + np.where(bumpy, _bumps(rng, u_col[cols], seg.params[sc, 7]), 0.0)
    # rows where 0 <= Y <= height, with Y = eye - (row - horizon) * Z / focal
    y_top = cam.horizon + cam.focal * (cam.eye_height - height) / zc
    y_bot = cam.horizon + cam.focal * cam.eye_height / zc
    rr, ci = _column_spans(y_top, y_bot, cam.height)
    cc = cols[ci]
    closer = zc[ci] < depth[rr, cc]
    rr, ci, cc = rr[closer], ci[closer], cc[closer]
    if rr.size == 0:
        return
    z = zc[ci]
    s = sc[ci]
    kind = seg.kind[s]
    y = cam.eye_height - state["b"][rr] * z
    u = u_col[cc]
    seg_h = seg.height[s]
    fence = kind == _Segments.FENCE
    if fence.any():  # railings or mesh: only the bars are fence, the gaps show what is behind
        mesh = seg.params[s, 5] == 0
        pitch = np.where(mesh, 0.25, 0.12)
        bars = (_frac(u / pitch) < 0.35) | (y > seg_h - 0.08) | (mesh & (_frac(y / 0.25) < 0.3)) | \
               (_frac(u / 2.5) < 0.05)
        keep = ~fence | bars
        rr, cc, z, s, kind, y, u, seg_h = (v[keep] for v in (rr, cc, z, s, kind, y, u, seg_h))
    color = seg.color[s] * shade
    building = kind == _Segments.BUILDING
    if building.any():
        bi = np.nonzero(building)[0]
        sb, yb, ub = s[bi], y[bi], u[bi] - seg.bounds[s[bi]]
        pitch, win_w, floor_h, win_h, ground_h, shop_flag, tint, _ = seg.params[sb].T
        fu = _frac(ub / pitch)
        fl = (yb - ground_h) / floor_h
        fv = _frac(fl)
        upper = (yb > ground_h) & (yb < seg_h[bi] - 0.8)
        window = upper & (np.abs(fu - 0.5) < win_w / 2) & (fv > 0.3) & (fv < 0.3 + win_h)
        shop = (shop_flag > 0) & (yb > 0.4) & (yb < ground_h - 0.5) & (np.abs(fu - 0.5) < 0.4)
        floor_i = np.floor(fl).astype(np.int64)
        col_i = np.floor(ub / pitch).astype(np.int64)
        h = ((floor_i * 73856093) ^ (col_i * 19349663) ^ (sb * 83492791 + pattern_seed)) % 1009 / 1009.0
        glass = np.stack([40 + 60 * tint, 50 + 50 * tint, 60 + 40 * tint], 1) * (0.55 + 0.9 * h[:, None])
        glass[h > 0.96] = (235, 215, 150)  # a lit window
        pane = window | shop
        cb = color[bi]
        cb[pane] = glass[pane] * shade
        cb[yb > seg_h[bi] - 0.35] *= 0.75  # cornice
        color[bi] = cb
    wall = kind == _Segments.WALL
    if wall.any():
        wi = np.nonzero(wall)[0]
        yw, uw = y[wi], u[wi]
        cw = color[wi]
        cw[yw > seg_h[wi] - 0.12] *= 1.15  # coping
        brick = (seg.params[s[wi], 5] > 0) & ((_frac(yw / 0.22) < 0.12) |
                                              (_frac((uw + 0.2 * np.floor(yw / 0.22)) / 0.45) < 0.06))
        cw[brick] *= 0.7
        color[wi] = cw
    state["image"][rr, cc] = color
    state["label"][rr, cc] = _Segments.LABEL[kind]
    state["depth"][rr, cc] = z


# ----------------------------------------------------------------------------------- the ground
def _render_ground(state, rng, road: _Road, palette) -> np.ndarray:
    """Road, kerb strip, sidewalk and verge on the ground plane. Returns the lateral map."""
    cam = state["cam"]
    r0 = int(np.ceil(cam.horizon))
    if r0 >= cam.height:
        return np.zeros((0, cam.width), np.float32)
    b = state["b"][r0:, None]
    z = (cam.eye_height / np.maximum(b, 1e-6)).astype(np.float32)  # (rows, 1)
    lat = (state["a"][None, :] * z - road.center(z)).astype(np.float32)
    absl, left = np.abs(lat), lat < 0
    e1 = np.where(left, road.inner(-1), road.inner(1))
    e2 = e1 + np.where(left, road.sidewalk[-1], road.sidewalk[1])
    strip_label = np.where(left, road.strip[-1][1], road.strip[1][1])
    verge_label = np.where(left, road.verge[-1], road.verge[1])
    label = np.where(absl < road.half_width, ID["road"],
                     np.where(absl < e1, strip_label, np.where(absl < e2, ID["sidewalk"], verge_label))).astype(np.uint8)
    on_road = label == ID["road"]
    if road.rail is not None:
        label[on_road & (np.abs(lat - road.rail) < 0.85)] = ID["rail track"]
    color = palette[label]
    # texture detail only where a pixel is smaller than the pattern (no aliasing mush far away)
    footprint = z * z / (cam.focal * cam.eye_height)  # metres of ground per pixel row
    marks = np.zeros(lat.shape, bool)
    if footprint.min() < 3.0:
        dash = _frac(z / rng.uniform(6, 12)) < rng.uniform(0.3, 0.5)
        width = rng.uniform(0.1, 0.16)
        for i in range(1, road.lanes):
            centre = -road.half_width + i * road.lane_width
            line = np.abs(lat - centre) < width / 2
            if i == road.lanes // 2 and rng.random() < 0.5:
                marks |= line
            else:
                marks |= line & dash
        if rng.random() < 0.6:
            marks |= np.abs(absl - (road.half_width - 0.3)) < width / 2
        if road.crosswalk is not None:
            z0, z1 = road.crosswalk
            marks |= (z > z0) & (z < z1) & (_frac(lat) < 0.5)
        marks &= on_road
        paint = hsv(50, 0.7, 0.85) if rng.random() < 0.15 else np.array([225.0, 225, 220])
        color[marks] = paint * rng.uniform(0.75, 1.0)
        fine = footprint < 0.08
        kerb = (label == ID["sidewalk"]) & (absl < e1 + 0.22)
        color[kerb] = color[kerb] * 1.25
        tile = rng.uniform(0.3, 0.6)
        joints = (label == ID["sidewalk"]) & fine & ((_frac(absl / tile) < 0.07) | (_frac(z / tile) < 0.07))
        color[joints] *= 0.8
        bays = (label == ID["parking"]) & fine & (_frac(z / 5.5) < 0.04)
        color[bays] = 215
        if road.rail is not None:
            steel = (label == ID["rail track"]) & (np.abs(np.abs(lat - road.rail) - 0.72) < 0.045)
            color[steel] = 170
    state["image"][r0:] = color
    state["label"][r0:] = label
    state["depth"][r0:] = np.broadcast_to(z, lat.shape)
    return lat


# --------------------------------------------------------------------------------- the objects
def _place_objects(state, rng, road: _Road, greens) -> list:
    """(depth, draw) pairs for everything standing in the street."""
    cam, ids = state["cam"], state["ids"]
    items = []

    def add(z, fn, *args, **kwargs):
        if 3.0 < z < road.z_end - 3:
            items.append((z, lambda: fn(state["painter"], cam, rng, *args, **kwargs)))

    def world_x(lat, z):
        return float(road.center(z) + lat)

    # traffic in the lanes (right-hand traffic: lanes left of the centre come towards us)
    density = rng.uniform(0.01, 0.05)
    for i in range(road.lanes):
        lat = -road.half_width + (i + 0.5) * road.lane_width
        oncoming = lat < 0 and rng.random() < 0.9
        z = rng.uniform(6, 20)
        if abs(world_x(lat, z)) < road.lane_width / 2:
            z += rng.uniform(4, 10)  # keep a gap in front of the ego car
        while z < road.z_end - 10:
            if road.rail is not None and abs(lat - road.rail) < 1:
                break
            if rng.random() < density * 20:
                x = world_x(lat + rng.normal(0, 0.25), z)
                kind = rng.choice(["car", "truck", "bus", "caravan", "trailer", "motorcycle"],
                                  p=[0.72, 0.09, 0.08, 0.03, 0.04, 0.04])
                if kind == "car":
                    add(z, obj.draw_car, x, z, oncoming, ids)
                    length = 5
                elif kind == "truck":
                    add(z, obj.draw_truck, x, z, oncoming, ids)
                    length = 11
                elif kind == "bus":
                    add(z, obj.draw_bus, x, z, oncoming, ids)
                    length = 13
                elif kind == "caravan":
                    add(z, obj.draw_caravan, x, z, ids)
                    length = 7
                elif kind == "trailer":
                    add(z, obj.draw_trailer, x, z, ids)
                    add(z + 4.2, obj.draw_car, x, z + 4.2, oncoming, ids)
                    length = 10
                else:
                    heading = (np.pi / 2 - rng.uniform(0.35, 0.9)) * rng.choice([-1, 1])
                    _add_rider(add, rng, ids, x, z, heading, motor=True)
                    length = 3
                z += length + rng.uniform(2, 25)
            else:
                z += rng.uniform(5, 25)
    if road.rail is not None:
        z = rng.uniform(15, 60)
        add(z, obj.draw_train, world_x(road.rail, z), z, road.rail < 0, ids)
    for side in (-1, 1):
        width, strip_label = road.strip[side]
        edge = road.half_width
        # parked cars along the kerb or in the parking strip
        if strip_label == ID["parking"] or (width == 0 and rng.random() < 0.4):
            lat = side * (edge + width / 2) if strip_label == ID["parking"] else side * (edge - 1.1)
            z = rng.uniform(4, 15)
            group = rng.random() < 0.3
            crowd_z = rng.uniform(35, 60)
            while z < road.z_end - 10:
                if rng.random() < 0.7:
                    inst = ID["car"] if group and z > crowd_z else None  # far packed cars: a crowd region
                    add(z, obj.draw_car, world_x(lat + rng.normal(0, 0.15), z), z, False, ids, instance=inst)
                z += rng.uniform(4.8, 9) if not (group and z > crowd_z) else rng.uniform(3.2, 4.2)
        inner = road.inner(side)
        walk = road.sidewalk[side]
        # poles, lamps, lights and signs near the kerb
        z = rng.uniform(5, 20)
        while z < road.z_end - 5:
            lat = side * (inner + rng.uniform(0.3, 0.6))
            r = rng.random()
            if r < 0.45:
                add(z, obj.draw_street_lamp, world_x(lat, z), z, -side)
            elif r < 0.65:
                add(z, obj.draw_traffic_sign, world_x(lat, z), z)
            elif r < 0.8:
                over = -side * rng.uniform(2, road.half_width) if rng.random() < 0.3 else 0.0
                add(z, obj.draw_traffic_light, world_x(lat, z), z, over)
            else:
                add(z, _bollard_pole, world_x(lat, z), z)
            z += rng.uniform(8, 30)
        # trees on the sidewalk
        if rng.random() < 0.55:
            z = rng.uniform(4, 12)
            step = rng.uniform(6, 15)
            while z < road.z_end - 5:
                add(z, obj.draw_tree, world_x(side * (inner + walk * rng.uniform(0.55, 0.85)), z), z, greens)
                z += step * rng.uniform(0.8, 1.2)
        # pedestrians, parked bicycles, street furniture
        for _ in range(int(rng.poisson(rng.uniform(1, 7)))):
            z = rng.uniform(4, 60)
            add(z, obj.draw_person, world_x(side * (inner + walk * rng.uniform(0.15, 0.9)), z), z, ids(ID["person"]))
        if rng.random() < 0.35:
            z = rng.uniform(5, 30)
            for j in range(int(rng.integers(1, 4))):
                zj = z + j * 0.7
                add(zj, obj.draw_bicycle, world_x(side * (inner + walk * 0.8), zj), zj,
                    rng.uniform(-0.4, 0.4), ids(ID["bicycle"]))
        for _ in range(int(rng.poisson(1.5))):
            z = rng.uniform(4, 50)
            add(z, obj.draw_static, world_x(side * (inner + walk * rng.uniform(0.2, 0.9)), z), z)
        if rng.random() < 0.15:
            z = rng.uniform(5, 30)
            add(z, obj.draw_dynamic, world_x(side * (inner + walk * 0.5), z), z)
        # riders on bicycles at the road edge
        for _ in range(int(rng.poisson(0.7))):
            z = rng.uniform(6, 45)
            heading = (np.pi / 2 - rng.uniform(0.4, 1.2)) * (1 if side > 0 else -1)
            _add_rider(add, rng, ids, world_x(side * (road.half_width - 0.8), z), z, heading, motor=False)
    # crowds: groups of people with the plain class id, as the official crowd annotations
    for _ in range(int(rng.integers(0, 3))):
        side = rng.choice([-1, 1])
        z = rng.uniform(25, 60)
        for _ in range(int(rng.integers(3, 8))):
            zj = z + rng.uniform(0, 2)
            lat = side * (road.inner(side) + road.sidewalk[side] * rng.uniform(0.1, 0.9))
            add(zj, obj.draw_person, world_x(lat, zj), zj, ID["person"])
    if road.crosswalk is not None:
        z0, z1 = road.crosswalk
        for _ in range(int(rng.poisson(2))):
            z = rng.uniform(z0, z1)
            add(z, obj.draw_person, world_x(rng.uniform(-road.half_width, road.half_width), z), z, ids(ID["person"]))
    items.sort(key=lambda item: -item[0])
    return items


def _bollard_pole(p, cam, rng, x, z) -> None:
    obj.draw_pole(p, cam, x, z, rng.uniform(2.5, 4), 0.05, hsv(0, 0, rng.uniform(0.3, 0.6)))


def _add_rider(add, rng, ids, x, z, heading, motor: bool) -> None:
    bike_label = ID["motorcycle"] if motor else ID["bicycle"]
    bike_inst, rider_inst = ids(bike_label), ids(ID["rider"])
    draw_bike = obj.draw_motorcycle if motor else obj.draw_bicycle

    def both(p, cam, rng_, *_):
        draw_bike(p, cam, rng_, x, z, heading, bike_inst)
        obj.draw_rider(p, cam, rng_, x, z, heading, rider_inst, motor)

    add(z, both)


# ---------------------------------------------------------------------------------- finishing
# per label: fine grain, blob (low frequency) and mid-frequency texture strength (0..255 units)
_TEXTURE = np.zeros((256, 3), np.float32)
for _name, _amp in {"road": (5, 10, 4), "sidewalk": (5, 8, 4), "parking": (5, 10, 4), "rail track": (6, 10, 5),
                    "ground": (8, 14, 8), "terrain": (12, 18, 16), "vegetation": (10, 12, 26),
                    "building": (4, 10, 4), "wall": (4, 10, 5), "fence": (3, 4, 2), "sky": (1, 0, 0),
                    "person": (3, 2, 3), "rider": (3, 2, 3), "pole": (2, 3, 2), "static": (3, 4, 3)}.items():
    _TEXTURE[ID[_name]] = _amp


_GROUND_IDS = [ID[n] for n in ("road", "sidewalk", "parking", "rail track", "terrain", "ground")]


def _noise_field(rng, shape, cell) -> np.ndarray:
    h, w = shape
    small = rng.standard_normal((max(2, h // cell + 2), max(2, w // cell + 2))).astype(np.float32)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)


def _sky(state, rng) -> None:
    cam, image = state["cam"], state["image"]
    rows, cols = np.nonzero(state["label"] == ID["sky"])
    if rows.size == 0:
        return
    if rng.random() < 0.3:  # overcast
        zenith = hsv(rng.uniform(190, 230), rng.uniform(0.02, 0.1), rng.uniform(0.6, 0.85))
        horizon = zenith * rng.uniform(1.02, 1.15)
    else:
        zenith = hsv(rng.uniform(195, 225), rng.uniform(0.35, 0.7), rng.uniform(0.7, 0.95))
        horizon = hsv(rng.uniform(190, 220), rng.uniform(0.05, 0.25), rng.uniform(0.85, 1.0))
    t = np.clip((cam.horizon - rows) / max(cam.horizon, 1.0), 0, 1)[:, None]
    field = _noise_field(rng, (cam.height, cam.width), max(8, cam.width // 12))
    cloud = np.clip(field[rows, cols] * rng.uniform(0.4, 1.0) - rng.uniform(0.0, 0.8), 0, 1)[:, None]
    sky = horizon * (1 - t) + zenith * t
    image[rows, cols] = sky * (1 - cloud) + rng.uniform(215, 250) * cloud + image[rows, cols] * 0.0


def _ego_vehicle(state, rng) -> None:
    """The bonnet at the bottom, labelled 'ego vehicle' (ignored) as in every Cityscapes frame."""
    cam, painter = state["cam"], state["painter"]
    h, w = cam.height, cam.width
    top = h * (1 - rng.uniform(0.05, 0.13))
    xs = np.linspace(-0.05, 1.05, 24) * w
    bulge = (1 - np.square((xs - w * rng.uniform(0.4, 0.6)) / (0.6 * w))) * rng.uniform(0.02, 0.05) * h
    ys = top - bulge + (np.abs(xs - w / 2) / (w / 2)) ** 3 * rng.uniform(0.02, 0.08) * h
    pts = np.concatenate([np.stack([xs, ys], 1), [[1.05 * w, h + 2], [-0.05 * w, h + 2]]])
    color = hsv(rng.uniform(0, 360), rng.uniform(0, 0.15), rng.uniform(0.05, 0.3))
    painter.polygon(pts, color, ID["ego vehicle"], None, 0.0)
    # a soft reflection of the street on the bonnet
    mask = state["label"] == ID["ego vehicle"]
    rows = np.nonzero(mask.any(1))[0]
    if rows.size:
        r0 = rows[0]
        src = state["image"][max(0, 2 * r0 - h):r0][::-1]
        refl = np.zeros_like(state["image"][r0:])
        refl[:src.shape[0]] = src
        region = state["image"][r0:]
        m = mask[r0:]
        region[m] = region[m] * 0.7 + cv2.blur(refl, (9, 3))[m] * 0.3


def _borders(label: np.ndarray, image: np.ndarray, rng) -> None:
    """'out of roi' frame and 'rectification border' corners, both ignored by the evaluator."""
    h, w = label.shape
    k = max(1, int(round(w / 512)))
    t = int(rng.integers(0, 3)) * k
    if t:
        label[:t] = ID["out of roi"]
        label[:, :t] = ID["out of roi"]
        label[:, w - t:] = ID["out of roi"]
    for corner_x in (0, w - 1):
        size = int(rng.integers(4, 16) * k)
        pts = np.array([[corner_x, h - 1], [corner_x, h - 1 - size], [abs(corner_x - size * 2), h - 1]], np.int32)
        cv2.fillPoly(label, [pts], ID["rectification border"])
        cv2.fillPoly(image, [pts], (0, 0, 0))


def render_street_scene(rng: np.random.Generator, size: tuple[int, int] = (512, 1024)) -> SceneSample:
    """One street scene at ``size`` (height, width) drawn from ``rng``."""
    height, width = size
    cam = Camera(height, width, focal=width * rng.uniform(0.8, 1.15), cx=width * (0.5 + rng.uniform(-0.08, 0.08)),
                 horizon=height * rng.uniform(0.36, 0.52), eye_height=rng.uniform(1.25, 1.7))
    road = _sample_road(rng)
    image = np.zeros((height, width, 3), np.float32)
    label = np.full((height, width), ID["sky"], np.uint8)
    instance = np.zeros((height, width), np.uint16)
    depth = np.full((height, width), np.inf, np.float32)
    state = {"cam": cam, "image": image, "label": label, "depth": depth, "ids": InstanceCounter(),
             "a": ((np.arange(width, dtype=np.float32) + 0.5 - cam.cx) / cam.focal),
             "b": ((np.arange(height, dtype=np.float32) + 0.5 - cam.horizon) / cam.focal)}
    greens = _greens(rng)
    palette = np.zeros((256, 3), np.float32)
    palette[ID["road"]] = hsv(rng.uniform(0, 360), rng.uniform(0, 0.08), rng.uniform(0.25, 0.45))
    palette[ID["rail track"]] = palette[ID["road"]] * 0.85
    palette[ID["parking"]] = jitter(rng, palette[ID["road"]] * rng.uniform(0.85, 1.2), 8)
    style = rng.integers(3)
    palette[ID["sidewalk"]] = (hsv(rng.uniform(0, 360), rng.uniform(0, 0.06), rng.uniform(0.5, 0.7)),
                               hsv(rng.uniform(0, 20), rng.uniform(0.2, 0.4), rng.uniform(0.45, 0.6)),
                               hsv(rng.uniform(30, 45), rng.uniform(0.15, 0.3), rng.uniform(0.55, 0.7)))[style]
    palette[ID["terrain"]] = hsv(rng.uniform(40, 95), rng.uniform(0.3, 0.6), rng.uniform(0.35, 0.6))
    palette[ID["ground"]] = hsv(rng.uniform(20, 40), rng.uniform(0.2, 0.45), rng.uniform(0.3, 0.55))

    # background: ground, then facades, second row and far end with a depth test
    lat = _render_ground(state, rng, road, palette)
    wall_color = hsv(rng.uniform(20, 50), rng.uniform(0, 0.15), rng.uniform(0.45, 0.75))
    fence_color = hsv(rng.uniform(0, 360), rng.uniform(0, 0.3), rng.uniform(0.15, 0.45)) \
        if rng.random() < 0.7 else hsv(rng.uniform(20, 35), 0.5, rng.uniform(0.3, 0.5))
    sun = rng.choice([-1, 1])
    a = state["a"]
    for side in (-1, 1):
        shade = 1.0 if side == sun else rng.uniform(0.6, 0.85)
        park = rng.random() < 0.25
        probs = [0.2, 0.1, 0.25, 0.25, 0.2] if park else [0.08, 0.62, 0.1, 0.1, 0.1]
        front = _segments(rng, -10, road.z_end, probs,
                          {0: (0, 0), 1: (6, 25), 2: (0.8, 2.5), 3: (1.0, 2.2), 4: (0.8, 2.2)},
                          greens, wall_color, fence_color)
        zf = _plane_depth(road, a, side * road.front[side])
        _render_plane(state, rng, zf, zf, front, shade, int(rng.integers(1 << 20)))
        back = _segments(rng, -10, road.z_end, [0.1, 0.5, 0.0, 0.0, 0.4],
                         {0: (0, 0), 1: (8, 30), 2: (0, 0), 3: (0, 0), 4: (5, 14)}, greens, wall_color, fence_color)
        zb = _plane_depth(road, a, side * road.back[side])
        _render_plane(state, rng, zb, zb, back, shade * 0.95, int(rng.integers(1 << 20)))
    far = _segments(rng, -road.z_end * 2, road.z_end * 2, [0.05, 0.55, 0.0, 0.0, 0.4],
                    {0: (0, 0), 1: (6, 35), 2: (0, 0), 3: (0, 0), 4: (5, 15)}, greens, wall_color, fence_color)
    z_far = np.full(width, road.z_end, np.float32)
    _render_plane(state, rng, z_far, a * road.z_end, far, 0.9, int(rng.integers(1 << 20)))
    instance[:] = label  # stuff pixels carry their label id in instanceIds

    # things, far to near
    state["painter"] = Painter(image, label, instance, depth)
    for _, draw in _place_objects(state, rng, road, greens):
        draw()

    # light: facade shadows across the ground on the sun's far side, leaf shadows, vignetting
    gain = np.ones((height, width), np.float32)
    r0 = height - lat.shape[0]
    if lat.shape[0]:
        ground = np.isin(label[r0:], _GROUND_IDS)
        shadow = (lat * -sun > road.front[-sun] - rng.uniform(1, 12)) & ground
        leaves = (_noise_field(rng, lat.shape, max(4, width // 60)) > rng.uniform(1.0, 2.0)) & ground
        gain[r0:][shadow] = rng.uniform(0.5, 0.75)
        gain[r0:][leaves] *= rng.uniform(0.65, 0.85)
    yy, xx = np.ogrid[-1:1:complex(0, height), -1:1:complex(0, width)]
    gain *= (1 - rng.uniform(0, 0.35) * (xx * xx + yy * yy) / 2).astype(np.float32)

    # textures per class (fine grain, blotches, leaf-size clumps), then sky, haze and noise
    amp = _TEXTURE[label] * rng.uniform(0.7, 1.3, 3).astype(np.float32)
    grain = rng.standard_normal((height, width), dtype=np.float32)
    blob = _noise_field(rng, (height, width), max(4, width // 24))
    mid = _noise_field(rng, (height, width), max(2, width // 150))
    tex = amp[..., 0] * grain + amp[..., 1] * blob + amp[..., 2] * mid
    veg = label == ID["vegetation"]
    image += tex[..., None]
    image[veg] += (mid[veg] * 8)[:, None] * np.array([0.6, 1.0, -0.4], np.float32)  # yellow-green leaves
    _sky(state, rng)
    sky = label == ID["sky"]
    depth[sky] = 0.0
    haze = 1 - np.exp(-np.minimum(depth, 1e4) / rng.uniform(80, 400))
    haze_color = hsv(rng.uniform(190, 230), rng.uniform(0, 0.15), rng.uniform(0.7, 0.9)).astype(np.float32)
    image *= (gain * (1 - haze))[..., None]
    image += (gain * haze)[..., None] * haze_color
    _ego_vehicle(state, rng)
    light = hsv(rng.uniform(20, 220), rng.uniform(0, 0.12), 1.0) / 255.0 * rng.uniform(0.75, 1.2)
    image *= light.astype(np.float32)
    sigma = rng.uniform(0.3, 0.9) * width / 1024
    image = cv2.GaussianBlur(image, (0, 0), sigma)
    image += rng.normal(0, rng.uniform(1.5, 6), (height, width, 1)).astype(np.float32)
    out = np.clip(image, 0, 255).astype(np.uint8)
    _borders(label, out, rng)
    instance[label == ID["out of roi"]] = ID["out of roi"]
    instance[label == ID["rectification border"]] = ID["rectification border"]
    return SceneSample(out, label, instance)
