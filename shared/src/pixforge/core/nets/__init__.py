"""Networks shared by several pixforge tools.

`inception`: InceptionV3 for FID / KID (pytorch-fid's TF-ported variant and torchvision's), loadable
strictly from the public weight files.
`stylegan2`: the StyleGAN2 (config F) generator with NVlabs' parameter names
(`from pixforge.core.nets.stylegan2 import Generator`).
`vgg`: VGG19 features for perceptual losses, loadable from torchvision-format `vgg19` weight files.
`patchgan`: pix2pixHD/SPADE-style multi-scale PatchGAN discriminators (spectral + instance norm) that
return every layer's features for feature matching.
"""

from pixforge.core.nets.inception import InceptionFeatures, InceptionV3, load_weights

__all__ = ["InceptionFeatures", "InceptionV3", "load_weights"]
