"""ComoSVC: diffusion singing voice conversion with a consistency-distilled one-step student."""

from comosvc.config import ComoSVCConfig, load_config

__version__ = "0.1.0"

__all__ = ["ComoSVCConfig", "load_config", "__version__"]
