"""Meta-architectures, one file each; importing this package registers them."""

from rtseg.models.decoders import dilation, linknet, lraspp, skipnet, unet  # noqa: F401
from rtseg.models.decoders.base import Decoder  # noqa: F401
