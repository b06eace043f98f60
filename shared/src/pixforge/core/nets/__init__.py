"""Networks shared by several pixforge tools.

`inception`: InceptionV3 for FID / KID (pytorch-fid's TF-ported variant and torchvision's), loadable
strictly from the public weight files.
`stylegan2`: the StyleGAN2 (config F) generator with NVlabs' parameter names
(`from pixforge.core.nets.stylegan2 import Generator`); `stylegan2_discriminator`: its discriminator (resnet,
skip or orig; minibatch stddev; conditioning by projection; fp16/bf16 top resolutions; Freeze-D), same names.
`vgg`: VGG19 features for perceptual losses, loadable from torchvision-format `vgg19` weight files.
`patchgan`: pix2pixHD/SPADE-style multi-scale PatchGAN discriminators (spectral + instance norm) that
return every layer's features for feature matching.
`resnet`: ResNet-18/34/50/101 with torchvision's parameter names, loadable from torchvision, DDP and MoCo
checkpoint files (`resnet50(weights=path)`), or seeded random init.
"""

from pixforge.core.nets.inception import InceptionFeatures, InceptionV3, load_weights
from pixforge.core.nets.resnet import ResNet, load_resnet, resnet, resnet18, resnet34, resnet50, resnet101

__all__ = ["InceptionFeatures", "InceptionV3", "ResNet", "load_resnet", "load_weights", "resnet", "resnet18",
           "resnet34", "resnet50", "resnet101"]
