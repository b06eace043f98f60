"""The contrastive pieces of `pretrain`: the two-view augmentations, MoCo v2 and the alignment + uniformity losses.

* `TwoViews(kind, size, seed)`: two augmented views of a uint8 batch, drawn with kornia on the batch's device from
  a generator seeded by (seed, step, rank), so a step's views are the same in a resumed run;
  kind "mocov2" = MoCo v2's `--aug-plus` (RandomResizedCrop scale (0.2, 1), ColorJitter(0.4, 0.4, 0.4, 0.1)
  p 0.8, grayscale p 0.2, Gaussian blur sigma U(0.1, 2) p 0.5, horizontal flip, ImageNet normalisation);
  kind "alignunif" = the official align/uniform set (RandomResizedCrop scale (0.08, 1), flip,
  ColorJitter(0.4, 0.4, 0.4, 0.4), grayscale p 0.2).
* `MoCo(arch, dim, K, m, T)`: query and key encoders (`pixforge.core.nets.resnet`, torchvision names, the 2-layer
  MLP head `fc.0` / `fc.2` as MoCo v2's `--mlp`), the momentum update k = m k + (1 - m) q, the queue of K keys
  (enqueued at `queue_ptr`, oldest overwritten first) and the InfoNCE logits (positive at column 0).
  Under torchrun: keys gathered from every rank before they are enqueued, and shuffle BN (the key batch permuted
  across ranks, as MoCo) or SyncBN.
* `AlignUniform(arch, dim)`: one encoder with the same head, L2-normalised outputs; `align_loss` and
  `uniform_loss` are Wang & Isola's (alpha 2, t 2).

State dict keys are `encoder_q.*` (and `encoder_k.*`, `queue`, `queue_ptr`): a MoCo checkpoint's layout, which
`pixforge.core.nets.resnet.read_state` (and so featurevis `--encoder`) reads back as a torchvision ResNet.
"""

from __future__ import annotations

import copy
import math

import torch
import torch.distributed as tdist
import torch.nn.functional as F
from torch import nn

from pixforge.core import distributed
from pixforge.core.nets.resnet import IMAGENET_MEAN, IMAGENET_STD, ResNet

AUGMENTATIONS = ("mocov2", "alignunif")
BLUR_SIGMA = (0.1, 2.0)  # MoCo v2's GaussianBlur([.1, 2.]) (PIL radius = sigma), at 224 px


def augmentation(kind: str, size: int) -> nn.Sequential:
    """The kornia pipeline of `kind` producing `size` x `size` crops of [0, 1] images, ImageNet-normalised."""
    import kornia.augmentation as K

    mean, std = torch.tensor(IMAGENET_MEAN), torch.tensor(IMAGENET_STD)
    if kind == "mocov2":
        # sigma in pixels of a 224 px crop: scaled with the crop size (exactly the official values at 224)
        lo, hi = (s * size / 224 for s in BLUR_SIGMA)
        kernel = 2 * math.ceil(3 * hi) + 1
        return nn.Sequential(
            K.RandomResizedCrop((size, size), scale=(0.2, 1.0)),
            K.ColorJitter(0.4, 0.4, 0.4, 0.1, p=0.8),
            K.RandomGrayscale(p=0.2),
            K.RandomGaussianBlur((kernel, kernel), (lo, hi), p=0.5),
            K.RandomHorizontalFlip(),
            K.Normalize(mean, std))
    if kind == "alignunif":
        return nn.Sequential(
            K.RandomResizedCrop((size, size), scale=(0.08, 1.0)),
            K.RandomHorizontalFlip(),
            K.ColorJitter(0.4, 0.4, 0.4, 0.4),
            K.RandomGrayscale(p=0.2),
            K.Normalize(mean, std))
    raise ValueError(f"unknown augmentation {kind!r}")


def step_seed(seed: int, step: int, rank: int, salt: int = 0) -> int:
    """A 63-bit seed of (seed, step, rank, salt)."""
    return ((((seed * 1_000_003 + step) * 1_000_033 + rank) * 31 + salt) * 0x9E3779B97F4A7C15) % (2**63 - 1)


class TwoViews:
    """Two augmented views of uint8 N x 3 x H x W images (on their device), a pure function of (seed, step, rank)."""

    def __init__(self, kind: str, size: int, seed: int = 0):
        self.kind, self.size, self.seed = kind, size, seed
        self.pipe = augmentation(kind, size)

    def __call__(self, images: torch.Tensor, step: int, rank: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        x = images.float() / 255.0
        # kornia draws its parameters from torch's CPU generator: seeded here, the global state left alone
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(step_seed(self.seed, step, rank))
            q, k = self.pipe(x), self.pipe(x)
        return q.contiguous(), k.contiguous()


def projection_encoder(arch: str, dim: int = 128, mlp: bool = True,
                       generator: torch.Generator | None = None) -> ResNet:
    """A ResNet whose `fc` is MoCo v2's head: Linear(C, C), ReLU, Linear(C, dim) (`mlp`), else Linear(C, dim)."""
    net = ResNet(arch, num_classes=dim, generator=generator)
    if mlp:
        hidden = nn.Linear(net.num_features, net.num_features)
        with torch.no_grad():  # nn.Linear's default initialisation, from `generator`
            nn.init.kaiming_uniform_(hidden.weight, a=math.sqrt(5), generator=generator)
            bound = 1 / math.sqrt(net.num_features)
            nn.init.uniform_(hidden.bias, -bound, bound, generator=generator)
        net.fc = nn.Sequential(hidden, nn.ReLU(inplace=True), net.fc)
    return net


def info_nce_logits(q: torch.Tensor, k: torch.Tensor, queue: torch.Tensor,
                    temperature: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(N x (1 + K) logits, N zeros): [q.k, q.queue] / T for normalised q, k (N x D) and queue (D x K)."""
    l_pos = torch.einsum("nc,nc->n", q, k).unsqueeze(-1)
    l_neg = torch.einsum("nc,ck->nk", q, queue)
    logits = torch.cat([l_pos, l_neg], dim=1) / temperature
    return logits, torch.zeros(logits.shape[0], dtype=torch.long, device=logits.device)


def align_loss(x: torch.Tensor, y: torch.Tensor, alpha: float = 2) -> torch.Tensor:
    """E ||x - y||_2^alpha over positive pairs."""
    return (x - y).norm(p=2, dim=1).pow(alpha).mean()


def uniform_loss(x: torch.Tensor, t: float = 2) -> torch.Tensor:
    """log E exp(-t ||x_i - x_j||^2) over the pairs i < j of a batch."""
    return torch.pdist(x, p=2).pow(2).mul(-t).exp().mean().log()


@torch.no_grad()
def gather(tensor: torch.Tensor) -> torch.Tensor:
    """The tensors of every rank concatenated in rank order (the tensor itself in one process)."""
    if not distributed.info().enabled:
        return tensor
    parts = [torch.empty_like(tensor) for _ in range(distributed.info().world_size)]
    tdist.all_gather(parts, tensor.contiguous())
    return torch.cat(parts)


class MoCo(nn.Module):
    """MoCo v2: `forward(im_q, im_k, shuffle_seed)` -> (logits, labels), updating the key encoder and the queue."""

    def __init__(self, arch: str = "resnet50", dim: int = 128, K: int = 65536, m: float = 0.999, T: float = 0.2,
                 mlp: bool = True, shuffle_bn: bool = True, generator: torch.Generator | None = None):
        super().__init__()
        self.K, self.m, self.T, self.shuffle_bn = K, m, T, shuffle_bn
        self.encoder_q = projection_encoder(arch, dim, mlp, generator)
        self.encoder_k = copy.deepcopy(self.encoder_q).requires_grad_(False)
        self.register_buffer("queue", F.normalize(torch.randn(dim, K, generator=generator), dim=0))
        self.register_buffer("queue_ptr", torch.zeros(1, dtype=torch.long))

    @torch.no_grad()
    def momentum_update(self) -> None:
        """key = m * key + (1 - m) * query, parameter by parameter (buffers: the key encoder's own)."""
        for p_q, p_k in zip(self.encoder_q.parameters(), self.encoder_k.parameters(), strict=True):
            p_k.mul_(self.m).add_(p_q.detach(), alpha=1.0 - self.m)

    @torch.no_grad()
    def dequeue_and_enqueue(self, keys: torch.Tensor) -> None:
        """Write the keys of every rank (rank order) at `queue_ptr`, overwriting the oldest; advance the pointer."""
        keys = gather(keys)
        n, ptr = keys.shape[0], int(self.queue_ptr)
        if self.K % n:
            raise ValueError(f"queue size {self.K} is not a multiple of the global batch {n}")
        self.queue[:, ptr:ptr + n] = keys.T.to(self.queue.dtype)
        self.queue_ptr[0] = (ptr + n) % self.K

    @torch.no_grad()
    def keys(self, im_k: torch.Tensor, shuffle_seed: int = 0) -> torch.Tensor:
        """Normalised key features; under torchrun with shuffle BN the batch is permuted across ranks first."""
        dist = distributed.info()
        if not (dist.enabled and self.shuffle_bn):
            return F.normalize(self.encoder_k(im_k), dim=1)
        everything = gather(im_k)
        perm = torch.randperm(everything.shape[0], generator=torch.Generator().manual_seed(shuffle_seed))
        perm = perm.to(im_k.device)
        mine = perm.view(dist.world_size, -1)[dist.rank]
        k = F.normalize(self.encoder_k(everything[mine]), dim=1)
        all_k = gather(k)
        unshuffled = torch.empty_like(all_k)
        unshuffled[perm] = all_k
        return unshuffled.view(dist.world_size, -1, all_k.shape[1])[dist.rank]

    def forward(self, im_q: torch.Tensor, im_k: torch.Tensor,
                shuffle_seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        q = F.normalize(self.encoder_q(im_q), dim=1)
        with torch.no_grad():
            self.momentum_update()
            k = self.keys(im_k, shuffle_seed)
        logits, labels = info_nce_logits(q.float(), k.float(), self.queue.clone().detach(), self.T)
        self.dequeue_and_enqueue(k.float())
        return logits, labels


class AlignUniform(nn.Module):
    """One encoder (`encoder_q`, the same head) for both views, run as one batch; L2-normalised features."""

    def __init__(self, arch: str = "resnet50", dim: int = 128, mlp: bool = True,
                 generator: torch.Generator | None = None):
        super().__init__()
        self.encoder_q = projection_encoder(arch, dim, mlp, generator)

    def forward(self, x: torch.Tensor, y: torch.Tensor, shuffle_seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        return F.normalize(self.encoder_q(torch.cat([x, y])).float(), dim=1).chunk(2)


def backbone_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The query encoder without its head, torchvision names (what `resnet(arch, weights=...)` loads headless)."""
    state = distributed.unwrap(model).encoder_q.state_dict()
    return {k: v for k, v in state.items() if not k.startswith("fc.")}
