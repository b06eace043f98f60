"""`pixforge-tsit` (also `pixforge tsit`): the Fire surface over train, translate, export and demo."""

from __future__ import annotations

from pixforge.core.cli import run
from pixforge.export.errors import PixforgeError


class TSIT:
    """TSIT two-stream image-to-image translation: train, translate images/folders/videos, export to ONNX."""

    def train(self, out: str, task: str = "ast", content: str | None = None, style: str | None = None, size=256,
              batch: int = 1, steps: int | None = None, kimg: float | None = None, ngf: int = 64, levels: int = 8,
              ndf: int = 64, num_d: int = 2, n_layers_d: int | None = None, num_classes: int | None = None,
              dontcare: int | None = None, instances: str | None = None, vae: bool | None = None, z_dim: int = 256,
              enc_size: int = 256, lambda_vgg: float | None = None,
              lambda_feat: float | None = None, lambda_kld: float = 0.05, lr_g: float = 1e-4, lr_d: float = 4e-4,
              beta1: float = 0.0, beta2: float = 0.9, decay_steps: int = 0, vgg_weights: str | None = None,
              vgg_imagenet_norm: bool = False, preprocess: str = "fixed", load_size: int | None = None,
              hflip: bool = True, ema: float = 0.0, seed: int = 0, workers: int = 0, ckpt_every: int = 1000,
              sample_every: int = 500, keep_last: int = 3, fid_every: int = 0, fid_images: int = 500,
              inception_weights: str | None = None, device: str = "auto", amp: bool | str = False,
              threads: int | None = None, resume: bool = False, overwrite: bool = False, quiet: bool = False) -> str:
        """Train TSIT into the run directory OUT (config.json, checkpoints/, samples/, metrics.jsonl, log.txt);
        multi-GPU with `torchrun --nproc-per-node G -m pixforge.tsit.cli train ...` (--batch is per process).

        Tasks: ast = arbitrary style transfer (--content and --style: unpaired image folders); mmis = multi-modal
        synthesis (--style holds one subfolder per condition); sis = semantic synthesis (--content: label-map PNGs
        of class ids, --style: the matching images by relative name, --num-classes K; VAE encoder on by default;
        --dontcare 255 adds the "don't care" class for that id (official contain_dontcare_label; ADE20K as the
        official code feeds it: --num-classes 151, id 0 "unknown" a class of its own; or --num-classes 150
        --dontcare 0, the SPADE intent: 0 -> the don't-care class, ids above 0 down by one); --instances DIR adds
        the instance maps' boundary channel (official default for Cityscapes, whose *_instanceIds.png go there,
        renamed to the label maps' names)).
        Network: --ngf 64 and --levels 8 are the official model (~398M parameters, stride 128: sizes must be
        multiples of 2^(levels-1)); --num-d 2 scales of --n-layers-d 3 (4 for sis) PatchGANs.
        Losses: hinge GAN + --lambda-feat feature matching + --lambda-vgg VGG19 perceptual (defaults per task as the
        official scripts: ast/mmis 1/1, sis 20/10, + --lambda-kld 0.05 with the VAE); --vgg-weights PATH|URL is
        torchvision's vgg19 file (without it the perceptual term is off, with a warning).
        Optimiser: Adam(--beta1 0, --beta2 0.9), --lr-g 1e-4 / --lr-d 4e-4, --decay-steps N = linear decay to 0 over
        the last N steps. Length: --steps N or --kimg K (thousands of images). --size 256 or HxW (the crop);
        --preprocess fixed (resize to --size; Cityscapes, style transfer), resize_and_crop (--load-size square, then a
        random crop; ADE20K 286), crop, scale_width_and_crop or scale_shortside_and_crop (to --load-size); --amp
        (bf16/fp16 on GPU); --ema 0.999 keeps an EMA generator; --fid-every N with --inception-weights logs FID
        against the style images. --resume continues."""
        options = {k: v for k, v in locals().items() if k != "self"}
        from pixforge.tsit.train import train

        return str(train(**options))

    def translate(self, *inputs: str, run: str | None = None, style: str | None = None, out: str | None = None,
                  alpha: float = 1.0, batch: int = 4, seed: int = 0, instances: str | None = None,
                  device: str = "auto", overwrite: bool = False, quiet: bool = False) -> str:
        """Translate INPUTS (images, folders, videos; label maps for semantic synthesis) with the model in --run (a run
        directory, a checkpoint file or release folder) and the style image --style (a folder: every style in it,
        results in OUT/<style name>/); results in --out at each input's own size (padded to the network's stride
        and cropped back), never over an input (--overwrite replaces earlier results only). --alpha sets FAdaIN's
        strength; --seed the noise (one noise map per video); --instances DIR the instance maps (by relative name)
        for a semantic-synthesis model trained with them."""
        from pixforge.tsit.translate import translate

        if run is None or out is None:
            raise PixforgeError("--run and --out are required")
        written = translate(run, list(inputs), out, style=style, alpha=alpha, batch=batch, seed=seed, device=device,
                            overwrite=overwrite, quiet=quiet, instances=instances)
        return f"wrote {len(written)} file(s) under {out}"

    def export(self, run: str, out: str = "model.onnx", alpha: float = 1.0, fp16: bool = False,
               overwrite: bool = False, code: str = "style", quiet: bool = False) -> str:
        """Export the generator of --run to an ONNX file (inputs content, style, noise, alpha; dynamic batch and
        spatial sizes; pixforge metadata) and check it against PyTorch. Run it with
        `pixforge-run run OUT CONTENT --input style=STYLE --out DIR`. Semantic synthesis: content is a label map,
        plus `--input instances=DIR` (each label map's instance map, same name) for a model trained with them; a VAE
        model takes the style image (--code style) or, with --code random, a noise input z that pixforge-run draws
        from --seed per item (multi-modal output, as translate without --style). The export and the check each print
        a line on stderr when they start (--quiet: none)."""
        from pixforge.tsit.export import export

        return str(export(run, out, alpha=alpha, fp16=fp16, overwrite=overwrite, code=code, quiet=quiet))

    def convert(self, weights: str, out: str | None = None, encoder: str | None = None, task: str | None = None,
                size="256", num_classes: int | None = None, dontcare: int | None = None, instance: bool = False,
                enc_size: int = 256, inference: str | None = None, overwrite: bool = False) -> str:
        """Turn an official TSIT generator (EndlessSora/TSIT latest_net_G.pth; + --encoder latest_net_E.pth for a VAE
        model) into a release folder OUT that translate and export take as --run. The width and the kind of start
        come from the weights; --task (ast/mmis; sis when it has no style stream), --size HxW (the training size,
        which a VAE model's start map fixes) and, for semantic synthesis, the labels as the official loader feeds
        them: --num-classes (label_nc), --dontcare 255 (contain_dontcare_label: id 255 -> the extra channel),
        --instance (instance maps used); ADE20K: --num-classes 151 and no --dontcare (its official postprocess has
        no effect, so id k is channel k for 0..150). --inference train runs the model as the official test.py runs
        multi-modal (the default for --task mmis) and photo2art models, without model.eval(): each image normalised
        by its own statistics, spectral norms one power-iteration step on; eval (the default otherwise) uses the
        running statistics."""
        from pixforge.tsit.official import convert

        if out is None:
            raise PixforgeError("--out is required: the release folder to write")
        return str(convert(weights, out, encoder=encoder, task=task, size=size, num_classes=num_classes,
                           dontcare=dontcare, instance=instance, enc_size=enc_size, inference=inference,
                           overwrite=overwrite))

    def demo(self, out: str = "tsit-demo", steps: int = 150, overwrite: bool = False) -> str:
        """A few-minute CPU run on scikit-image's photos (content) and textures (style): train a small TSIT, translate,
        export and run the ONNX model with pixforge-run; returns where everything is."""
        from pixforge.tsit.demo import demo

        return demo(out, steps=steps, overwrite=overwrite)


def main() -> None:
    run(TSIT, name="pixforge-tsit")


if __name__ == "__main__":
    main()
