"""Learning paths on the simplex: distances, the zig-zag, ECE and Filter-KD targets."""

from ldjax._src.paths import SIMPLEX_CORNERS
from ldjax._src.paths import ZigZag
from ldjax._src.paths import distances
from ldjax._src.paths import expected_calibration_error
from ldjax._src.paths import filter_targets
from ldjax._src.paths import simplex_coordinates
from ldjax._src.paths import zigzag

__all__ = (
    "SIMPLEX_CORNERS",
    "ZigZag",
    "distances",
    "expected_calibration_error",
    "filter_targets",
    "simplex_coordinates",
    "zigzag",
)
