"""LFI-CAM: the network wrapper, its training, and the stability metric."""
from .network import LFICAMNet
