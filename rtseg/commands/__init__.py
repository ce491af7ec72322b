"""Sub-commands of the ``rtseg`` command line (see ``rtseg.cli``)."""
