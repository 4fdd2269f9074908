"""Synthetic people and faces, the unsafe-pose catalogue, benign motions and training data."""

from poseguard_lib.data.appearance import Appearance, sample_appearances
from poseguard_lib.data.face import FaceParams, draw_face_contours, face_landmarks, render_face
from poseguard_lib.data.render import render_person
