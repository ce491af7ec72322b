"""Datasets (one interface: Cityscapes, CamVid, folder datasets), the readers, the checks, the
synthetic generator, transforms, the fast training augmentation and class weights."""
