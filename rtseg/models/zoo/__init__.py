"""Today's real-time segmentation networks, one file each, loading their authors' checkpoints.

Importing this package registers them (``rtseg.create_model("pidnet_s")``). Each file's
header names its paper and the official repository whose released weights it loads.
"""

from rtseg.models.zoo import ddrnet  # noqa: F401,E402
from rtseg.models.zoo import pidnet  # noqa: F401,E402
from rtseg.models.zoo import fast_scnn  # noqa: F401,E402
from rtseg.models.zoo import bisenet_v2  # noqa: F401,E402
