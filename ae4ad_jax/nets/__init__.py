"""Flax linen modules only: the layers with the reference's initialisation and BatchNorm
(`layers.py`), the paper's AE and its architecture declaration (`autoencoder.py`),
GANomaly, the DAE's U-Net, the perceptual AE's VGG19 (`ganomaly.py`, `unet.py`,
`vgg.py`), the learned rate's density (`rate.py`), and how layers compute: the kernel
contract with XLA's forms (`kernels.py`) and XLA:CPU's faster forms (`cpu_kernels.py`).
No optax, no data, no jit.

May import: core.
Libraries: flax, jax.
"""
