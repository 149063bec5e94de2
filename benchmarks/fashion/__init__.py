"""The Fashion-MNIST regime: the training settings under which the method tables are run."""
