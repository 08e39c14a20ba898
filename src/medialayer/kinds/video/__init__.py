"""The video kind: sampled frames, per-frame codes and thumbnails, time-aligned matches.

The package imports nothing here: the kind adapter (`kind`) is loaded in every process and
imports PyAV and OpenCV only when a video is first decoded.
"""
