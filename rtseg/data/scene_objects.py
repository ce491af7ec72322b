"""Things in the synthetic street scenes: vehicles as projected 3-D boxes, people, bicycles
and motorcycles in perspective, poles, traffic lights and signs, trees and street furniture.

Every function draws one object with a ``Painter`` at a world position (metres, camera
frame: X right, Y up, Z forward). Each part carries the object's label id and instance id,
and details (windows, lights, plates) change the image only, as in the real annotations.
"""

from __future__ import annotations

import numpy as np

from rtseg.data.scene_paint import ID, Camera, InstanceCounter, Painter, hsv, jitter

_WHEEL = np.array([18.0, 18.0, 20.0])
_GLASS = np.array([45.0, 55.0, 65.0])


# --------------------------------------------------------------------------------------- boxes
def _project_quad(cam: Camera, corners: np.ndarray) -> np.ndarray:
    col, row = cam.project(corners[:, 0], corners[:, 1], corners[:, 2])
    return np.stack([col, row], axis=1)


def _sub_quad(corners: np.ndarray, s0: float, s1: float, t0: float, t1: float) -> np.ndarray:
    """Part of a face: corners are P(s=0,t=0), P(1,0), P(1,1), P(0,1); s across, t up."""
    p00, p10, p11, p01 = corners

    def at(s, t):
        return (1 - s) * (1 - t) * p00 + s * (1 - t) * p10 + s * t * p11 + (1 - s) * t * p01

    return np.stack([at(s0, t0), at(s1, t0), at(s1, t1), at(s0, t1)])


def box_faces(cam: Camera, x0, x1, y0, y1, z0, z1) -> dict[str, np.ndarray]:
    """The faces of an axis-aligned box that the camera sees, as 4x3 world corners."""
    faces = {}
    if y1 < cam.eye_height:
        faces["top"] = np.array([[x0, y1, z0], [x1, y1, z0], [x1, y1, z1], [x0, y1, z1]], float)
    if x0 > 0:
        faces["side"] = np.array([[x0, y0, z0], [x0, y0, z1], [x0, y1, z1], [x0, y1, z0]], float)
    elif x1 < 0:
        faces["side"] = np.array([[x1, y0, z0], [x1, y0, z1], [x1, y1, z1], [x1, y1, z0]], float)
    faces["near"] = np.array([[x0, y0, z0], [x1, y0, z0], [x1, y1, z0], [x0, y1, z0]], float)
    return faces


def _paint_box(p: Painter, cam: Camera, bounds, color, label, instance, side_shade, top_shade=1.12):
    faces = box_faces(cam, *bounds)
    shades = {"top": top_shade, "side": side_shade, "near": 1.0}
    for name in ("top", "side", "near"):
        if name in faces:
            p.polygon(_project_quad(cam, faces[name]), np.clip(color * shades[name], 0, 255),
                      label, instance, bounds[4])
    return faces


def _detail(p: Painter, cam: Camera, face, s0, s1, t0, t1, color) -> None:
    p.polygon(_project_quad(cam, _sub_quad(face, s0, s1, t0, t1)), color)


def _side_wheels(p, cam, side_face, zs, radius, label, instance, depth, hub=True) -> None:
    """Wheels as discs in the plane of a side face (perspective ellipses)."""
    x = side_face[0, 0]
    angles = np.linspace(0, 2 * np.pi, 16, endpoint=False)
    for z in zs:
        pts = np.stack([np.full(16, x), radius + radius * np.sin(angles), z + radius * np.cos(angles)], 1)
        p.polygon(_project_quad(cam, pts), _WHEEL, label, instance, depth)
        if hub:
            pts = np.stack([np.full(16, x), radius + 0.5 * radius * np.sin(angles),
                            z + 0.5 * radius * np.cos(angles)], 1)
            p.polygon(_project_quad(cam, pts), (120, 120, 125))


def _rear_wheels(p, cam, x0, x1, z, height, width, label, instance) -> None:
    for a, b in ((x0 + 0.05, x0 + 0.05 + width), (x1 - 0.05 - width, x1 - 0.05)):
        p.polygon(_project_quad(cam, box_faces(cam, a, b, 0.0, height, z, z + 0.3)["near"]),
                  _WHEEL, label, instance, z)


# ------------------------------------------------------------------------------------ vehicles
def vehicle_color(rng: np.random.Generator) -> np.ndarray:
    """Mostly white, silver, grey and black, sometimes a saturated paint."""
    if rng.random() < 0.65:
        return hsv(rng.uniform(0, 360), rng.uniform(0, 0.08), rng.choice([0.12, 0.35, 0.6, 0.85]) + rng.uniform(0, 0.1))
    return hsv(rng.uniform(0, 360), rng.uniform(0.5, 0.9), rng.uniform(0.35, 0.85))


def draw_car(p: Painter, cam: Camera, rng, x: float, z: float, oncoming: bool, ids: InstanceCounter,
             label: int = ID["car"], instance: int | None = None) -> None:
    """A car whose nearest face is at depth ``z``, centred at lateral ``x``."""
    w, length = rng.uniform(1.65, 1.95), rng.uniform(3.9, 4.9)
    h = rng.uniform(1.4, 1.55) if rng.random() < 0.75 else rng.uniform(1.6, 1.8)
    inst = ids(label) if instance is None else instance
    color = vehicle_color(rng)
    shade = rng.uniform(0.7, 0.9)
    x0, x1, z1 = x - w / 2, x + w / 2, z + length
    belt = 0.55 * h + 0.05
    body = _paint_box(p, cam, (x0, x1, 0.2, belt, z, z1), color, label, inst, shade)
    near_inset, far_inset = (0.28, 0.18) if oncoming else (0.18, 0.28)
    cz0, cz1 = z + near_inset * length, z1 - far_inset * length
    cabin = _paint_box(p, cam, (x0 + 0.1, x1 - 0.1, belt, h, cz0, cz1), color, label, inst, shade, 1.2)
    _detail(p, cam, cabin["near"], 0.08, 0.92, 0.1, 0.88, jitter(rng, _GLASS, 12))
    if "side" in cabin:
        glass = jitter(rng, _GLASS, 10) * shade
        _detail(p, cam, cabin["side"], 0.07, 0.47, 0.12, 0.85, glass)
        _detail(p, cam, cabin["side"], 0.53, 0.93, 0.12, 0.85, glass)
    if "side" in body:
        _side_wheels(p, cam, body["side"], (z + 0.8, z1 - 0.8), 0.32, label, inst, z)
    _rear_wheels(p, cam, x0, x1, z + 0.6, 0.22, 0.24, label, inst)
    near = body["near"]
    lamp = np.array([250.0, 240.0, 200.0]) if oncoming else np.array([200.0, 20.0, 25.0])
    _detail(p, cam, near, 0.03, 0.2, 0.55, 0.85, lamp)
    _detail(p, cam, near, 0.8, 0.97, 0.55, 0.85, lamp)
    _detail(p, cam, near, 0.0, 1.0, 0.0, 0.16, color * 0.45)
    _detail(p, cam, near, 0.38, 0.62, 0.2, 0.42, (235, 235, 225))


def draw_truck(p, cam, rng, x, z, oncoming, ids) -> None:
    label, inst = ID["truck"], ids(ID["truck"])
    w = rng.uniform(2.3, 2.5)
    cab_len, cargo_len = rng.uniform(2.0, 2.4), rng.uniform(4.5, 8.0)
    cargo_h, cab_h = rng.uniform(3.0, 3.8), rng.uniform(2.6, 3.0)
    cargo_color = hsv(rng.uniform(0, 360), rng.uniform(0, 0.15), rng.uniform(0.6, 0.95)) \
        if rng.random() < 0.6 else hsv(rng.uniform(0, 360), rng.uniform(0.4, 0.8), rng.uniform(0.3, 0.8))
    cab_color = hsv(rng.uniform(0, 360), rng.uniform(0.2, 0.8), rng.uniform(0.3, 0.9))
    shade = rng.uniform(0.7, 0.9)
    x0, x1 = x - w / 2, x + w / 2
    if oncoming:
        parts = [((x0, x1, 0.9, cargo_h, z + cab_len + 0.3, z + cab_len + 0.3 + cargo_len), cargo_color),
                 ((x0 + 0.05, x1 - 0.05, 0.5, cab_h, z, z + cab_len), cab_color)]
    else:
        parts = [((x0 + 0.05, x1 - 0.05, 0.5, cab_h, z + cargo_len + 0.3, z + cargo_len + 0.3 + cab_len), cab_color),
                 ((x0, x1, 0.9, cargo_h, z, z + cargo_len), cargo_color)]
    for bounds, color in parts:
        faces = _paint_box(p, cam, bounds, color, label, inst, shade)
        is_cab = color is cab_color
        if "side" in faces:
            z0b, z1b = bounds[4], bounds[5]
            wheel_z = (z0b + 0.9,) if is_cab else (z1b - 1.0, z1b - 2.1)
            _side_wheels(p, cam, faces["side"], wheel_z, 0.5, label, inst, z0b)
            if is_cab:
                _detail(p, cam, faces["side"], 0.15, 0.8, 0.55, 0.85, _GLASS * shade)
        if is_cab and oncoming:
            _detail(p, cam, faces["near"], 0.06, 0.94, 0.5, 0.88, jitter(rng, _GLASS, 10))
            _detail(p, cam, faces["near"], 0.05, 0.2, 0.08, 0.16, (240, 235, 210))
            _detail(p, cam, faces["near"], 0.8, 0.95, 0.08, 0.16, (240, 235, 210))
        if not is_cab and not oncoming:
            _detail(p, cam, faces["near"], 0.495, 0.505, 0.03, 0.97, color * 0.5)
            _detail(p, cam, faces["near"], 0.0, 1.0, 0.0, 0.05, color * 0.4)
            _detail(p, cam, faces["near"], 0.02, 0.12, 0.06, 0.12, (200, 25, 25))
            _detail(p, cam, faces["near"], 0.88, 0.98, 0.06, 0.12, (200, 25, 25))
    _rear_wheels(p, cam, x0, x1, z + 0.5, 0.9 if not oncoming else 0.5, 0.45, label, inst)


def _long_vehicle(p, cam, rng, x, z, oncoming, label, inst, w, length, y0, h, color, window_pitch):
    """Bus and tram: a long box with a band of side windows and a big windscreen."""
    shade = rng.uniform(0.7, 0.9)
    faces = _paint_box(p, cam, (x - w / 2, x + w / 2, y0, h, z, z + length), color, label, inst, shade)
    glass = jitter(rng, _GLASS, 10)
    if "side" in faces:
        n = max(2, int(length / window_pitch))
        for i in range(n):
            s0 = (i + 0.08) / n
            _detail(p, cam, faces["side"], s0, s0 + 0.84 / n, 0.4, 0.85, glass * shade)
        _side_wheels(p, cam, faces["side"], (z + 2.2, z + length - 2.5), 0.5, label, inst, z)
    if oncoming or label == ID["train"]:
        _detail(p, cam, faces["near"], 0.05, 0.95, 0.35, 0.9, glass)
        _detail(p, cam, faces["near"], 0.2, 0.8, 0.92, 0.98, (255, 160, 40))
        _detail(p, cam, faces["near"], 0.05, 0.18, 0.08, 0.14, (245, 240, 215))
        _detail(p, cam, faces["near"], 0.82, 0.95, 0.08, 0.14, (245, 240, 215))
    else:
        _detail(p, cam, faces["near"], 0.12, 0.88, 0.6, 0.9, glass)
        _detail(p, cam, faces["near"], 0.04, 0.14, 0.1, 0.25, (200, 25, 25))
        _detail(p, cam, faces["near"], 0.86, 0.96, 0.1, 0.25, (200, 25, 25))
    _rear_wheels(p, cam, x - w / 2, x + w / 2, z + 1.0, y0 + 0.05, 0.4, label, inst)


BUS_COLORS = ((50, 0.85, 0.95), (5, 0.8, 0.75), (215, 0.7, 0.6), (140, 0.5, 0.55), (0, 0.0, 0.92))


def draw_bus(p, cam, rng, x, z, oncoming, ids) -> None:
    h, s, v = BUS_COLORS[rng.integers(len(BUS_COLORS))]
    color = jitter(rng, hsv(h + rng.normal(0, 6), s, v), 12)
    _long_vehicle(p, cam, rng, x, z, oncoming, ID["bus"], ids(ID["bus"]), 2.55, rng.uniform(10, 13),
                  0.3, rng.uniform(3.0, 3.3), color, 1.5)


def draw_train(p, cam, rng, x, z, oncoming, ids) -> None:
    color = hsv(rng.choice([0, 50, 200, 0]), rng.choice([0.0, 0.7]), rng.uniform(0.6, 0.95))
    _long_vehicle(p, cam, rng, x, z, oncoming, ID["train"], ids(ID["train"]), 2.65, rng.uniform(25, 35),
                  0.4, 3.45, color, 2.2)


def draw_caravan(p, cam, rng, x, z, ids) -> None:
    label, inst = ID["caravan"], ids(ID["caravan"])
    w, length, h = rng.uniform(2.2, 2.4), rng.uniform(5, 7), rng.uniform(2.5, 2.8)
    color = hsv(rng.uniform(30, 50), rng.uniform(0.03, 0.15), rng.uniform(0.8, 0.95))
    faces = _paint_box(p, cam, (x - w / 2, x + w / 2, 0.35, h, z, z + length), color, label, inst, 0.85)
    stripe = hsv(rng.uniform(0, 360), 0.6, 0.6)
    for name, face in faces.items():
        if name != "top":
            _detail(p, cam, face, 0.0, 1.0, 0.3, 0.36, stripe)
            _detail(p, cam, face, 0.3, 0.7, 0.55, 0.8, _GLASS)
        if name == "side":
            _side_wheels(p, cam, face, (z + length / 2,), 0.35, label, inst, z)


def draw_trailer(p, cam, rng, x, z, ids) -> None:
    label, inst = ID["trailer"], ids(ID["trailer"])
    w, length, h = rng.uniform(1.7, 2.1), rng.uniform(2.5, 4.0), rng.uniform(1.3, 2.2)
    color = hsv(rng.choice([100, 210, 30, 0]), rng.uniform(0.1, 0.5), rng.uniform(0.35, 0.7))
    faces = _paint_box(p, cam, (x - w / 2, x + w / 2, 0.45, h, z, z + length), color, label, inst, 0.8)
    if "side" in faces:
        _side_wheels(p, cam, faces["side"], (z + length / 2,), 0.3, label, inst, z)
    _rear_wheels(p, cam, x - w / 2, x + w / 2, z + length / 2, 0.45, 0.2, label, inst)
    _detail(p, cam, faces["near"], 0.05, 0.2, 0.0, 0.1, (190, 30, 30))
    _detail(p, cam, faces["near"], 0.8, 0.95, 0.0, 0.1, (190, 30, 30))


# -------------------------------------------------------------------------------------- people
def _skin(rng) -> np.ndarray:
    return hsv(rng.uniform(15, 35), rng.uniform(0.25, 0.6), rng.uniform(0.3, 0.92))


def _clothes(rng) -> np.ndarray:
    return hsv(rng.uniform(0, 360), rng.uniform(0.0, 0.85), rng.uniform(0.08, 0.92))


def draw_person(p: Painter, cam: Camera, rng, x: float, z: float, instance: int,
                label: int = ID["person"]) -> None:
    """A walking pedestrian facing the camera or sideways, as a billboard at depth ``z``."""
    h = rng.uniform(1.5, 1.95)
    stride = rng.uniform(-0.35, 0.35)
    swing = rng.uniform(-0.15, 0.15)
    top, bottom, skin = _clothes(rng), _clothes(rng) * rng.uniform(0.4, 1.0), _skin(rng)
    hair = hsv(rng.uniform(15, 40), rng.uniform(0.2, 0.7), rng.uniform(0.05, 0.5))
    width = rng.uniform(0.85, 1.2)

    def pt(dx, y):
        return cam.project(x + dx * width, y, z)

    def quad(a, b, half_a, half_b):
        (ax, ay), (bx, by) = a, b
        return np.array([pt(ax - half_a, ay), pt(ax + half_a, ay), pt(bx + half_b, by), pt(bx - half_b, by)])

    for side in (-1, 1):  # legs
        p.polygon(quad((side * 0.085, 0.5 * h), (side * 0.085 + side * stride / 2, 0.04), 0.075, 0.055),
                  bottom, label, instance, z)
        p.polygon(quad((side * 0.085 + side * stride / 2, 0.05), (side * 0.085 + side * stride / 2 + 0.05, 0.0),
                       0.06, 0.07), (30, 28, 28), label, instance, z)
    if rng.random() < 0.2:  # skirt or coat
        p.polygon(quad((0, 0.62 * h), (0, 0.3 * h), 0.16, 0.25), top * 0.8, label, instance, z)
    for side in (-1, 1):  # arms
        hand = (side * 0.23 + side * swing, 0.47 * h)
        p.polygon(quad((side * 0.2, 0.81 * h), hand, 0.05, 0.04), top * 0.9, label, instance, z)
        p.circle(pt(*hand), 0.04 * cam.scale(z), skin, label, instance, z)
    p.polygon([pt(-0.2, 0.82 * h), pt(0.2, 0.82 * h), pt(0.17, 0.5 * h), pt(-0.17, 0.5 * h)],
              top, label, instance, z)
    if rng.random() < 0.3:  # a bag
        s = 1 if rng.random() < 0.5 else -1
        p.polygon([pt(s * 0.2, 0.62 * h), pt(s * 0.36, 0.62 * h), pt(s * 0.36, 0.45 * h), pt(s * 0.2, 0.45 * h)],
                  _clothes(rng), label, instance, z)
    p.polygon(quad((0, 0.86 * h), (0, 0.8 * h), 0.04, 0.05), skin, label, instance, z)
    r = 0.062 * h * cam.scale(z)
    p.circle(pt(0, 0.935 * h), r * 1.05, hair, label, instance, z)
    p.circle(pt(0, 0.925 * h), r * 0.9, skin, label, instance, z)


def _bike_points(cam, x, z, heading, u, y):
    u, y = np.asarray(u, float), np.asarray(y, float)
    col, row = cam.project(x + u * np.cos(heading), y, z + u * np.sin(heading))
    return np.stack([np.atleast_1d(col), np.atleast_1d(row)], 1)


def _wheel(p, cam, x, z, heading, u, r, tyre, label, inst, color=_WHEEL) -> None:
    a = np.linspace(0, 2 * np.pi, 20, endpoint=False)
    pts = _bike_points(cam, x, z, heading, u + r * np.cos(a), r + r * np.sin(a))
    p.polyline(pts, tyre * cam.scale(z), color, label, inst, z, closed=True)


def draw_bicycle(p, cam, rng, x, z, heading, instance, label=ID["bicycle"]) -> None:
    """A bicycle in its own vertical plane, turned by ``heading`` (0 = seen from the side)."""
    r = 0.34
    frame = hsv(rng.uniform(0, 360), rng.uniform(0.1, 0.9), rng.uniform(0.1, 0.8))
    k = cam.scale(z)
    for u in (-0.52, 0.52):
        _wheel(p, cam, x, z, heading, u, r, 0.05, label, instance)
    joints = {"rear": (-0.52, r), "bb": (0.0, 0.3), "seat": (-0.12, 0.9), "head": (0.42, 0.95), "front": (0.52, r)}
    for a, b in (("rear", "bb"), ("rear", "seat"), ("bb", "seat"), ("seat", "head"), ("bb", "head"), ("head", "front")):
        pts = _bike_points(cam, x, z, heading, [joints[a][0], joints[b][0]], [joints[a][1], joints[b][1]])
        p.polyline(pts, 0.04 * k, frame, label, instance, z)
    p.polyline(_bike_points(cam, x, z, heading, [0.42, 0.36], [0.95, 1.06]), 0.035 * k, (40, 40, 40), label, instance, z)
    p.polyline(_bike_points(cam, x, z, heading, [-0.22, -0.04], [0.93, 0.93]), 0.05 * k, (25, 25, 25), label, instance, z)


def draw_motorcycle(p, cam, rng, x, z, heading, instance, label=ID["motorcycle"]) -> None:
    body = hsv(rng.uniform(0, 360), rng.uniform(0.0, 0.9), rng.uniform(0.1, 0.85))
    for u in (-0.7, 0.7):
        _wheel(p, cam, x, z, heading, u, 0.32, 0.11, label, instance)
    outline = _bike_points(cam, x, z, heading, [-0.6, -0.25, 0.3, 0.62, 0.35, -0.2], [0.55, 0.82, 0.95, 0.75, 0.35, 0.35])
    p.polygon(outline, body, label, instance, z)
    p.polygon(_bike_points(cam, x, z, heading, [-0.1, 0.25, 0.2, -0.15], [0.55, 0.55, 0.3, 0.3]), (90, 90, 95))
    p.polyline(_bike_points(cam, x, z, heading, [0.55, 0.7], [0.8, 0.32]), 0.05 * cam.scale(z),
               (60, 60, 60), label, instance, z)


def draw_rider(p, cam, rng, x, z, heading, instance, motor: bool) -> None:
    """A rider sitting on a bicycle or motorcycle drawn at the same place and heading."""
    label = ID["rider"]
    k = cam.scale(z)
    top, bottom, skin = _clothes(rng), _clothes(rng) * 0.7, _skin(rng)
    hip, knee, foot = ((-0.25, 0.85), (0.15, 0.75), (0.05, 0.35)) if motor else ((-0.12, 0.95), (0.12, 0.72), (0.02, 0.32))
    shoulder, hand = ((0.0, 1.45), (0.5, 1.0)) if motor else ((0.06, 1.5), (0.38, 1.05))
    for a, b, t, c in ((hip, knee, 0.15, bottom), (knee, foot, 0.12, bottom), (hip, shoulder, 0.34, top),
                       (shoulder, hand, 0.09, top)):
        pts = _bike_points(cam, x, z, heading, [a[0], b[0]], [a[1], b[1]])
        p.polyline(pts, t * k, c, label, instance, z)
    head = _bike_points(cam, x, z, heading, shoulder[0] + 0.04, shoulder[1] + 0.2)[0]
    if motor or rng.random() < 0.5:  # helmet
        p.circle(head, 0.14 * k, hsv(rng.uniform(0, 360), rng.uniform(0, 0.8), rng.uniform(0.1, 0.9)), label, instance, z)
    else:
        p.circle(head, 0.11 * k, skin, label, instance, z)


# ----------------------------------------------------------------------------- street furniture
def draw_pole(p, cam, x, z, height, radius, color, label=ID["pole"], y0=0.0) -> None:
    pts = np.stack(cam.project([x, x], [y0, height], [z, z]), 1)
    p.polyline(pts, 2 * radius * cam.scale(z), color, label, None, z)


def draw_street_lamp(p, cam, rng, x, z, toward_road: float) -> None:
    h = rng.uniform(5, 9)
    color = hsv(rng.uniform(0, 360), rng.uniform(0, 0.25), rng.uniform(0.2, 0.55))
    draw_pole(p, cam, x, z, h, rng.uniform(0.07, 0.12), color)
    arm = rng.uniform(0.8, 2.0) * toward_road
    pts = np.stack(cam.project([x, x + arm], [h, h - 0.1], [z, z]), 1)
    p.polyline(pts, 0.08 * cam.scale(z), color, ID["pole"], None, z)
    head = np.stack(cam.project([x + arm - 0.25, x + arm + 0.25, x + arm + 0.2, x + arm - 0.2],
                                [h, h, h - 0.25, h - 0.25], [z] * 4), 1)
    p.polygon(head, color * 0.8, ID["pole"], None, z)


def draw_traffic_light(p, cam, rng, x, z, over_road: float = 0.0) -> None:
    """A light on a pole at the kerb, or hanging from an arm ``over_road`` metres over the road."""
    pole = hsv(rng.uniform(0, 360), rng.uniform(0, 0.2), rng.uniform(0.15, 0.5))
    h = rng.uniform(2.6, 3.6) if not over_road else rng.uniform(5.0, 6.0)
    draw_pole(p, cam, x, z, h + (0.2 if over_road else 0.0), 0.07, pole)
    cx = x
    if over_road:
        p.polyline(np.stack(cam.project([x, x + over_road], [h + 0.2, h + 0.2], [z, z]), 1),
                   0.1 * cam.scale(z), pole, ID["pole"], None, z)
        cx = x + over_road
    housing = hsv(rng.uniform(40, 55), 0.8, 0.8) if rng.random() < 0.15 else hsv(0, 0, rng.uniform(0.08, 0.25))
    w, hh = 0.32, 0.9
    top = h + 0.1 if not over_road else h + 0.15
    corners = np.stack(cam.project([cx - w / 2, cx + w / 2, cx + w / 2, cx - w / 2],
                                   [top, top, top - hh, top - hh], [z] * 4), 1)
    p.polygon(corners, housing, ID["traffic light"], None, z)
    if rng.random() < 0.75:  # facing the camera: three lamps, one lit
        lit = rng.integers(3)
        dim = (np.array([70, 10, 10]), np.array([70, 55, 5]), np.array([5, 60, 30]))
        bright = (np.array([255, 40, 30]), np.array([255, 190, 20]), np.array([60, 255, 140]))
        for i in range(3):
            c = cam.project(cx, top - hh * (0.2 + 0.3 * i), z)
            p.circle(c, 0.1 * cam.scale(z), bright[i] if i == lit else dim[i])


def draw_traffic_sign(p, cam, rng, x, z, on_pole: bool = True) -> None:
    label = ID["traffic sign"]
    h = rng.uniform(2.0, 2.8)
    if on_pole:
        draw_pole(p, cam, x, z, h, 0.04, hsv(0, 0, rng.uniform(0.4, 0.7)))
    r = rng.uniform(0.3, 0.42)
    c = cam.project(x, h + r * 0.9, z)
    k = cam.scale(z)
    kind = rng.integers(5)
    red, white, blue = np.array([200, 20, 30.0]), np.array([240, 240, 235.0]), np.array([20, 70, 180.0])
    if rng.random() < 0.15:  # the back of a sign: grey, still a sign
        p.circle(c, r * k, hsv(0, 0, 0.55), label, None, z)
        return
    if kind == 0:  # prohibition: red ring, white inside
        p.circle(c, r * k, red, label, None, z)
        p.circle(c, 0.75 * r * k, white)
    elif kind == 1:  # mandatory: blue disc, white arrow
        p.circle(c, r * k, blue, label, None, z)
        p.polygon(np.array(c) + np.array([[-0.1, 0.3], [0.1, 0.3], [0.1, -0.1], [0.25, -0.1], [0, -0.45],
                                          [-0.25, -0.1], [-0.1, -0.1]]) * r * k, white)
    elif kind == 2:  # warning triangle
        tri = np.array(c) + np.array([[0, -1.0], [0.95, 0.65], [-0.95, 0.65]]) * r * k
        p.polygon(tri, red, label, None, z)
        p.polygon(np.array(c) + (tri - np.array(c)) * 0.7, white)
    elif kind == 3:  # information: blue square, white symbol
        sq = np.array(c) + np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]]) * 0.85 * r * k
        p.polygon(sq, blue, label, None, z)
        p.polygon(np.array(c) + (sq - np.array(c)) * 0.45, white)
    else:  # stop or yield-like octagon / diamond
        a = np.linspace(0, 2 * np.pi, 8, endpoint=False) + np.pi / 8
        octo = np.array(c) + np.stack([np.cos(a), np.sin(a)], 1) * r * k
        p.polygon(octo, red if rng.random() < 0.5 else hsv(50, 0.9, 0.95), label, None, z)
        p.polygon(np.array(c) + np.array([[-0.55, -0.12], [0.55, -0.12], [0.55, 0.12], [-0.55, 0.12]]) * r * k, white)


def draw_tree(p, cam, rng, x, z, greens) -> None:
    """Trunk and canopy are both vegetation in Cityscapes."""
    label = ID["vegetation"]
    trunk_h, crown = rng.uniform(2.0, 4.0), rng.uniform(1.5, 3.2)
    k = cam.scale(z)
    bark = hsv(rng.uniform(20, 35), rng.uniform(0.3, 0.5), rng.uniform(0.15, 0.35))
    draw_pole(p, cam, x, z, trunk_h + crown * 0.5, rng.uniform(0.1, 0.2), bark, label)
    centre_y = trunk_h + crown
    for _ in range(int(rng.integers(6, 12))):
        dx, dy = rng.normal(0, crown * 0.45), rng.normal(0, crown * 0.35)
        rad = crown * rng.uniform(0.35, 0.65)
        p.circle(cam.project(x + dx, centre_y + dy, z), rad * k, jitter(rng, greens[rng.integers(len(greens))], 18),
                 label, None, z)


def draw_static(p, cam, rng, x, z) -> None:
    """Bins, bollards and benches: label 'static' (ignored in evaluation)."""
    kind = rng.integers(3)
    label = ID["static"]
    if kind == 0:
        w, d, h = 0.5, 0.5, rng.uniform(0.8, 1.1)
        color = hsv(rng.choice([0, 120, 210, 40]), rng.uniform(0.2, 0.7), rng.uniform(0.2, 0.6))
    elif kind == 1:
        w, d, h = 0.14, 0.14, rng.uniform(0.7, 1.0)
        color = hsv(0, 0, rng.uniform(0.2, 0.7))
    else:
        w, d, h = rng.uniform(1.4, 1.9), 0.5, 0.5
        color = hsv(rng.uniform(20, 35), 0.5, rng.uniform(0.3, 0.5))
    _paint_box(p, cam, (x - w / 2, x + w / 2, 0.0, h, z, z + d), color, label, None, 0.8)


def draw_dynamic(p, cam, rng, x, z) -> None:
    """A pram or a push cart: label 'dynamic' (ignored in evaluation)."""
    color = hsv(rng.uniform(0, 360), rng.uniform(0.2, 0.8), rng.uniform(0.2, 0.7))
    _paint_box(p, cam, (x - 0.3, x + 0.3, 0.25, 1.0, z, z + 0.8), color, ID["dynamic"], None, 0.8)
    for u in (-0.22, 0.22):
        p.circle(cam.project(x + u, 0.12, z), 0.12 * cam.scale(z), _WHEEL, ID["dynamic"], None, z)
