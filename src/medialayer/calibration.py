"""The image kind's scores and confidence labels: every threshold lives here, set by
`bench/calibrate.py`.

A similarity score is in [0, 1], monotone in match strength and comparable across queries of one
media type. Each fingerprint tier maps its raw evidence onto that scale so that equal scores mean
roughly equal evidence; the labels then cut the scale where the dev corpus measured precision
>= 99 % (high) and >= 90 % (medium). Other kinds keep their own `Calibration` in their package.
"""

from __future__ import annotations

from medialayer.kinds.base import Calibration

IMAGE_CODE_BITS_TO_ZERO = 8
"""A global-code distance (of 64 bits) at which the global tier's score reaches 0."""
IMAGE_CODE_MIN_INFORMATION = 4
"""Global codes closer than this to a featureless image's code (`image.code_information`)
cannot make a match high on their own: unrelated gradients share them."""
IMAGE_FEATURELESS_MAX = 0.7
"""A featureless code's global score is scaled by this: an identical code is medium at best,
so only keypoints can make such a pair high, chance pairs of gradients stay near the bottom of
medium, and a closer code still ranks first."""
IMAGE_INLIERS_AT_HALF = 10
"""Half the RANSAC inlier count at which the keypoint tier's score reaches 0.5."""

IMAGE = Calibration(high=0.85, medium=0.65)
"""python bench/calibrate.py --corpus eval-data/image-dev --results results.csv, pooled with
bench/templates.py's sets (docs/benchmarks.md): high has 100 % precision and no negative on all
of them; medium is the operating point where <= 1 % of negatives match anything."""


def image_score(code_distance: int | None, inliers: int, code_information: int = 64) -> float:
    """One score from both image tiers: the stronger piece of evidence wins."""
    global_score = 0.0
    if code_distance is not None:
        global_score = max(0.0, 1.0 - code_distance / IMAGE_CODE_BITS_TO_ZERO)
        if code_information < IMAGE_CODE_MIN_INFORMATION:
            global_score *= IMAGE_FEATURELESS_MAX
    local_score = max(0.0, 1.0 - IMAGE_INLIERS_AT_HALF / inliers) if inliers > 0 else 0.0
    return round(max(global_score, local_score), 4)
