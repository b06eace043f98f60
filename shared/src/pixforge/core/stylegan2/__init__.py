"""StyleGAN2 training (Karras et al.; NVlabs stylegan2-ada-pytorch's recipe), shared by the tools that train it.

    configs.py        `--cfg` presets (batch, lr, gamma, EMA, mapping depth) computed as NVlabs' train.py
    dataset.py        training sets: image folder or NVlabs zip (`dataset.json` labels), `make_dataset`
    augment.py        ADA's differentiable augmentation pipe (the operations)
    diffaugment.py    DiffAugment: colour, translation, cutout
    strategy.py       how D's inputs are augmented and p adapted: noaug, fixed, ADA, DiffAugment (APA plugs in here)
    loss.py           StyleGAN2Loss: the phases Gmain, Greg, Dmain, Dreg (non-saturating logistic, R1, path length)
    train.py          the launcher and the one training loop
    convert.py        official `.pkl` snapshots -> our weights, through a restricted unpickler
    generate.py       a run's G_ema back, images by seed (NVlabs' generate.py seeds)
    export.py         G as ONNX for pixforge-run (z, truncation, class)
    tool.py           the verbs tools share: generate, export, convert, dataset

The networks live in `pixforge.core.nets.stylegan2` (G) and `pixforge.core.nets.stylegan2_discriminator` (D).
"""
