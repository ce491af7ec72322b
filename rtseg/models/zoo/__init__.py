"""Today's real-time segmentation networks, one file each, loading their authors' checkpoints.

Importing this package registers them (``rtseg.create_model("pidnet_s")``). Each network file's
header names its paper and the official repository whose released weights it loads; what the
families share is written once:

* ``blocks``: ConvBNReLU and its list forms, BiSeNet's attention blocks (ARM, FFM), ``resize``;
* ``pooling``: adaptive and global average pooling, exact in PyTorch and in ONNX at any size;
* ``pyramid``: the pyramid pooling modules (DAPPM, PAPPM, Fast-SCNN's PPM, PP-LiteSeg's SPPM);
* ``heads``: the two segmentation heads (BiSeNet/PaddleSeg's, the HRNet-style pre-activation one);
* ``residual``: DDRNet's and PIDNet's residual blocks and stages; ``stdc``: the STDC trunks;
  ``context_path``: BiSeNet's context path, shared by BiSeNet v1 and STDC-Seg;
* ``release_keys``: official key names -> ours; ``backbone_weights``: the authors' ImageNet
  files into the backbone they cover; ``eval_parameters``: which parameters the eval output
  depends on, and the training-only heads a release file may lack;
* ``published``: every network's published record (``published_records()``).

The same rules hold for every network (docs/zoo.md): eval mode returns the main logits at the
input's size, resized as the official evaluation does; training mode a dict with ``"out"`` and
each auxiliary output; a release converts as the authors published it, and one without its
training-only heads loads with them at their initialisation.
"""

from rtseg.models.zoo import bisenet_v1  # noqa: F401  (bisenet_v1)
from rtseg.models.zoo import bisenet_v2  # noqa: F401  (bisenet_v2)
from rtseg.models.zoo import ddrnet  # noqa: F401  (ddrnet_23_slim)
from rtseg.models.zoo import fast_scnn  # noqa: F401  (fast_scnn)
from rtseg.models.zoo import pidnet  # noqa: F401  (pidnet_s, pidnet_m, pidnet_l)
from rtseg.models.zoo import pp_liteseg  # noqa: F401  (pp_liteseg_t, pp_liteseg_b)
from rtseg.models.zoo import stdc_seg  # noqa: F401  (stdc1_seg, stdc2_seg)
