"""PoseGuard reproducible study: a thin library behind the notebooks.

Rooms: ``pose`` (formats, drawing, transforms), ``data`` (synthetic people and faces,
the unsafe-pose catalogue, benign motions), ``models`` (AnimateAnyone-style generator),
``metrics``, ``defense`` (PoseGuard), ``runner`` (papermill → book) and ``reporting``.
"""

__version__ = "0.1.0"
