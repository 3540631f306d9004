"""Zero-cost proxies computed on real networks with a batch of real images."""

from nag.zc.images import image_batch, load_images
from nag.zc.proxies import PROXIES, compute_proxies, synflow

__all__ = ["PROXIES", "compute_proxies", "image_batch", "load_images", "synflow"]
