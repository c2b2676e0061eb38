"""Every ``nn.Module`` a method needs, so the backend rebuilds networks from checkpoints without
importing ``training``. Each model module holds its config (a ``backend.config.Config``: pydantic
``model_dump(mode="json")`` / ``model_validate``), which a checkpoint's JSON carries as ``config["model"]``.

- ``inputs``: ``model_input``, the RGBA input (RGB times the mask, mask as alpha) of ``softras`` and
  ``pointcloud``.
- ``encoders``: image encoders for small inputs (SoftRas conv, ResNet-like, attention).
- ``softras``: the Soft Rasterizer ShapeNet reconstruction network on the 642-vertex icosphere.
- ``adaptive_flow``: the adaptive-flow network (UMR's texture-flow model plus the variance decoder D_var).
- ``discriminator``: the WGAN critic for renders (UMR's discriminator without batch norm).
- ``pointcloud``: DPC's point-cloud network (image -> N points in [-0.5, 0.5]^3, pose candidates, student).
- ``texture_completion``: the texture-completion network (generator completing a baked atlas; method
  texture-completion, formerly pointcloud-texture) and its training-only PatchGAN.
- ``vgg``: VGG-19 up to relu3_1 (MeshInversion's feature loss) and VGG16 up to relu3_3 (Unsup3d's
  perceptual loss), frozen (ImageNet weights only when already on the machine, else fixed random features).
- ``unsup3d``: Unsup3d's five networks (depth, albedo, light, view, confidence) and its image formation
  (``shade``, ``flip``, ``warp_to_view`` through the project's rasteriser, ``reconstruct`` for one step).
"""
