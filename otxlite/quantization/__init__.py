"""INT8 post-training quantization of otxlite IRs with NNCF (used by ``otxlite optimize`` and ``benchmark``)."""
