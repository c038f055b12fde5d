"""Reference NanoDet (legacy v0.x family) in PyTorch: model, checkpoint loading, pre/post-processing.

Every stage of the toolkit is compared against this package, so it follows upstream exactly:
module names reproduce upstream state_dict keys, preprocessing and decoding follow nanodet v0.4.2.
"""
