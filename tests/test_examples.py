"""The examples, in their quick forms (CI runs these)."""

from examples.closed_loop_control import main as closed_loop_control
from examples.keras_layer_inside import main as keras_layer_inside
from examples.recurrent_bptt import main as recurrent_bptt
from examples.spa_binding import main as spa_binding
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


def test_keras_layer_inside_quick(tmp_path):
    """Keras Conv2D and Dense layers around spiking LIF neurons, trained end to end.

    Measured on the 2-core CPU machine: spiking test accuracy 9.4% before
    training (chance: 10%), 93.8% after; training loss 2.04 -> 0.27.
    """
    png = tmp_path / "keras_layer_inside.png"
    result = keras_layer_inside(quick=True, plot_path=png)
    assert result["accuracy_before"] < 0.25
    assert result["accuracy_after"] > 0.85
    assert result["loss"][-1] < 0.3 * result["loss"][0]
    assert 10 < result["mean_rate_hz"] < 200  # the neurons spike, not saturate
    assert png.stat().st_size > 10_000


def test_recurrent_bptt_quick(tmp_path):
    """Training through 1000 steps fixes the integrator's leaky feedback.

    Measured on the 2-core CPU machine: spiking test MSE 0.093 before training,
    0.015 after full BPTT, 0.0067 after truncated BPTT (50-step windows).
    """
    png = tmp_path / "recurrent_bptt.png"
    result = recurrent_bptt(quick=True, plot_path=png)
    before = result["test_mse_before"]
    assert result["test_mse_full"] < 0.4 * before
    assert result["test_mse_truncated"] < 0.4 * before
    assert result["loss_full"][-1] < 0.4 * result["loss_full"][0]
    assert result["loss_truncated"][-1] < 0.4 * result["loss_truncated"][0]
    assert png.stat().st_size > 10_000


def test_closed_loop_control_quick(tmp_path):
    """The same closed loop on nengo and nengo_jax: the same arm trajectory.

    Measured on the 2-core CPU machine: the angles differ by at most 2.2e-7 rad;
    the arm settles within 0.05 rad of each target in 0.35 and 0.37 s.
    """
    png = tmp_path / "closed_loop_control.png"
    result = closed_loop_control(quick=True, plot_path=png)
    assert result["max_angle_diff"] < 1e-3
    assert all(s < 0.6 for s in result["settling_s"])
    assert result["final_error"] < 0.05
    assert png.stat().st_size > 10_000


def test_spa_binding_quick(tmp_path):
    """Four nengo_spa scenes in one batched run, each queried for colour and shape.

    Measured on the 2-core CPU machine (default and SSE4_2): 8 of 8 answers
    right, the right answer's similarity at least 0.42 and ahead of the most
    similar wrong one by at least 0.21; item 0's similarities differ from
    nengo.Simulator's by at most 0.008.
    """
    png = tmp_path / "spa_binding.png"
    result = spa_binding(quick=True, plot_path=png)
    assert len(result["scenes"]) == 4
    assert result["n_correct"] == result["n_questions"] == 8
    assert result["min_correct_similarity"] > 0.3
    assert result["min_margin"] > 0.1
    assert result["max_similarity_diff"] < 0.05
    assert png.stat().st_size > 10_000
