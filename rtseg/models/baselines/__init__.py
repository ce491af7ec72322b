"""Whole reference networks (ENet, SegNet); importing this package registers them."""
