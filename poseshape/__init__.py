"""poseshape: pose-aware 3-D shape and 6-DoF pose from a single image."""

__version__ = "0.1.0"
