"""The seed 003 tutorial ("from Nengo") as the main example runs it (fit, evaluate)."""

import numpy as np

from examples.from_nengo import train_tutorial, tutorial_net


def test_training_improves_spiking_model():
    """Training encoders and biases (as rates) lowers the spiking test error.

    Issue 4's criterion: at least 40% lower. The seed reports 0.0050 -> 0.00275
    (45%; "about 50%") for the network Nengo 2.8 draws for seed 0, which
    `tutorial_net` builds by setting Nengo 2.8's Ensemble defaults; on our test
    draw its error falls from 0.0042 to 0.0020 (53%).
    """
    before, after, history, _ = train_tutorial(tutorial_net())
    losses = history.history["loss"]
    assert losses[-1] < 0.5 * losses[0]
    assert after < 0.6 * before
    assert np.isfinite(after)
