"""Today's real-time segmentation networks, one file each, loading their authors' checkpoints.

Importing this package registers them (``rtseg.create_model("pidnet_s")``). Each file's
header names its paper and the official repository whose released weights it loads.
"""

from rtseg.models.zoo import bisenet_v1  # noqa: F401  (bisenet_v1)
from rtseg.models.zoo import bisenet_v2  # noqa: F401  (bisenet_v2)
from rtseg.models.zoo import ddrnet  # noqa: F401  (ddrnet_23_slim)
from rtseg.models.zoo import fast_scnn  # noqa: F401  (fast_scnn)
from rtseg.models.zoo import pidnet  # noqa: F401  (pidnet_s, pidnet_m, pidnet_l)
from rtseg.models.zoo import pp_liteseg  # noqa: F401  (pp_liteseg_t, pp_liteseg_b)
from rtseg.models.zoo import stdc_seg  # noqa: F401  (stdc1_seg, stdc2_seg)
