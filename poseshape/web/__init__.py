"""The web demo (``poseshape serve``): :func:`~poseshape.web.app.build_app` and the GrabCut mask.

Gradio is imported only inside :func:`~poseshape.web.app.build_app`, so this package imports
without it (the handler :func:`~poseshape.web.app.run_reconstruction` needs only OpenCV for
the box mask).
"""
