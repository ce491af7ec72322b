"""Cityscapes data: the label table, the reader, the synthetic generator, transforms, class weights."""
