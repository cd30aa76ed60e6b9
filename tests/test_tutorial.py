"""The seed 003 tutorial ("from Nengo"), as the main example runs it."""

import numpy as np

from examples.from_nengo import train_tutorial, tutorial_net


def test_training_improves_spiking_model():
    """Training encoders and biases (as rates) lowers the spiking test error.

    The seed reports about 50% lower error for its network draw; on Nengo 4,
    seed 0 draws a network whose error starts lower (0.0040 against the seed's
    0.0050) with little left to gain before the floor set by the 0.04 s probe
    filter and the spike noise: training brings it to 0.0032 (19% lower).
    """
    before, after, history, _ = train_tutorial(tutorial_net())
    losses = history.history["loss"]
    assert losses[-1] < 0.5 * losses[0]
    assert after < 0.85 * before
    assert np.isfinite(after)
