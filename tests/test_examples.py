"""The examples, in their quick forms (CI runs these)."""

from examples.spiking_digits import main as spiking_digits


def test_spiking_digits_quick(tmp_path):
    """Convert, train (rates), run spiking: the quick form's accuracies.

    Measured on the 2-core CPU machine: 93.8% rate and 93.8% spiking on the 160
    test images (the full run: 98-99% rate, 98% spiking on 352).
    """
    png = tmp_path / "spiking_digits.png"
    result = spiking_digits(quick=True, plot_path=png)
    assert result["loss"][-1] < 0.3 * result["loss"][0]
    assert result["rate_accuracy"] > 0.88
    assert result["spiking_accuracy"] > 0.85
    assert 20 < result["mean_rate_hz"] < 1000  # the neurons spike, not saturate
    assert png.stat().st_size > 10_000
