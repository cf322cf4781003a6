"""The web demo (``poseshape serve``): :func:`~poseshape.web.app.build_app`.

Gradio is imported only inside :func:`~poseshape.web.app.build_app`, so this package imports
without it. The box mask is :mod:`poseshape.engine.grabcut`'s (OpenCV, a core dependency),
shared with ``poseshape reconstruct --mask box:...``.
"""
