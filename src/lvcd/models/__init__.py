"""LVCD networks: UNet, ControlNet, attention, VAE, CLIP; official parameter names throughout."""
