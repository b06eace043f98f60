"""Faces for the video tools (extra `pixforge-core[faces]`): detect, landmarks, identity embedding, track, smooth,
align, paste back, behind one backend interface.

    backend = open_backend("dlib", detector="hog")                 # or "cnn"; dlib needs the faces extra
    faces = detect_faces(frame, backend, embed=True)               # [Face(box, score, landmarks (68, 2), embedding)]
    for index, by_track in track_faces(frames, backend, detect_every=5): ...   # {track id: Face} per frame
    smooth = smooth_sequence(np.stack([f.landmarks for f in track.faces]), track.frames, fps)   # One Euro
    crop, M = align(frame, face.landmarks, size=256)               # dlib mean-face template
    frame = paste_back(frame, new_crop, M, feather(hull_mask(transform_points(face.landmarks, M), crop.shape), 8))
    crop, M = crop_box(frame, square_box(face.box, 1.3), 299)     # forensics' 1.3x square crops

Images are uint8 H x W x 3 RGB. This module imports no backend library: `open_backend` does, lazily.
"""

from pixforge.core.faces.align import (
    SIZES,
    align,
    alignment_matrix,
    box_matrix,
    crop_box,
    feather,
    hull_mask,
    invert_affine,
    paste_back,
    square_box,
    square_mask,
    template,
    transform_points,
    umeyama,
    warp,
)
from pixforge.core.faces.backends import BACKENDS, DETECTORS, open_backend, open_detector
from pixforge.core.faces.detect import detect_faces
from pixforge.core.faces.face import FACES_EXTRA, Box, Face, FaceBackend
from pixforge.core.faces.smooth import OneEuroFilter, smooth_sequence
from pixforge.core.faces.track import FaceTracker, Track, iou, landmark_distance, refit, track_faces

__all__ = ["Box", "Face", "FaceBackend", "FACES_EXTRA", "BACKENDS", "DETECTORS", "open_backend", "open_detector",
           "detect_faces",
           "FaceTracker", "Track", "iou", "landmark_distance", "refit", "track_faces",
           "OneEuroFilter", "smooth_sequence",
           "SIZES", "umeyama", "template", "alignment_matrix", "transform_points", "invert_affine", "warp", "align",
           "square_box", "box_matrix", "crop_box", "hull_mask", "square_mask", "feather", "paste_back"]
