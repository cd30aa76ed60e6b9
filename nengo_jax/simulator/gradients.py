"""``check_gradients``: autodiff against finite differences with error bounds."""

from __future__ import annotations

import warnings
from collections import Counter

import jax
import jax.numpy as jnp
import numpy as np
from nengo.exceptions import SimulationError


class GradientCheck:
    """The gradient check, mixed into the `.Simulator`."""

    def check_gradients(
        self, x=None, n_steps=10, n_elements=4, atol=1e-4, rtol=1e-2, seed=0
    ):
        """Compare autodiff gradients with finite differences; raise on a mismatch.

        The function checked is a fixed random projection of every probe's
        output over ``n_steps`` steps of the training model (rates, as in
        `fit`), from the current state; the projection is summed in float64 on
        the host, so that float32 rounding in the sum does not pass for a
        gradient error. For each trainable parameter, ``n_elements`` random
        elements are checked.

        How an element is decided (see `finite_difference`): the function is
        taken at the element moved by ``s`` and ``s / 2`` either way, with
        ``s = 0.01 * max(1, |value|)``. The central differences give an estimate
        and a bound on its own error, from how they change with the step (which
        exposes truncation and a kink, such as a neuron's firing threshold,
        within the step) and from the float rounding of the outputs. If that
        error exceeds the tolerance, ``4 s``, ``16 s`` and ``s / 4`` are tried.
        An element whose error stays above the tolerance at every step cannot
        be judged by finite differences: it counts as unverified, not as a
        mismatch, and a warning names any parameter left with no verified
        element. A verified element fails if ``|autodiff - estimate|`` exceeds
        the tolerance plus the estimate's error.

        Parameters
        ----------
        x : dict
            Input data for one minibatch, as in `predict` (default: the Nodes'
            own outputs).
        n_steps : int
            Number of steps (with ``x``: its number of steps).
        n_elements : int
            Number of elements checked per parameter (all, if it has fewer).
        atol, rtol : float
            The tolerance: ``atol + rtol * max(|autodiff|, |estimate|)``.
        seed : int
            Seed of the projection and of the choice of elements.

        Returns
        -------
        dict
            Parameter key -> the largest mismatch among its verified elements,
            in units of the tolerance plus the estimate's error (at most 1, since
            a larger one raises); NaN for a parameter with no verified element.

        Raises
        ------
        SimulationError
            If the model has no trainable parameters, or an element fails.
        """
        model = self.keras_model
        x, _ = self._keras_data(x, None, None if x else n_steps, "check_gradients")
        x = {k: v[: self.minibatch_size] for k, v in x.items()}
        rng = np.random.RandomState(seed)
        with self._runtime.keras(model, "check_gradients", False, commit=False):
            if not model.built:
                model(x)
            variables = model.trainable_variables
            if not variables:
                raise SimulationError("The model has no trainable parameters")
            fixed = [v.value for v in model.non_trainable_variables]
            values = [v.value for v in variables]

            @jax.jit
            def outputs(trainable):
                return model.stateless_call(trainable, fixed, x, training=True)[0]

            weights = {
                k: rng.uniform(-1, 1, size=s.shape).astype(s.dtype)
                for k, s in jax.eval_shape(outputs, values).items()
            }

            def project(trainable):
                out = outputs(trainable)
                return sum(jnp.sum(w * out[k]) for k, w in weights.items())

            grads = jax.grad(project)(values)

            def projected(i, j, offset):
                """Weighted outputs (float64) with element ``j`` of ``i`` moved."""
                value = np.asarray(values[i]).ravel().copy()
                value[j] += offset
                trial = list(values)
                trial[i] = jnp.asarray(value.reshape(values[i].shape), values[i].dtype)
                out = outputs(trial)
                return np.concatenate(
                    [
                        (w.astype(np.float64) * np.asarray(out[k], np.float64)).ravel()
                        for k, w in weights.items()
                    ]
                )

            eps = max(float(np.finfo(v.dtype).eps) for v in values)
            checked, unverified = {}, Counter()
            for i, var in enumerate(variables):
                key = next(k for k, v in model.param_vars.items() if v is var)
                flat = np.asarray(values[i]).ravel()
                mask = model.masks.get(key)
                candidates = np.flatnonzero(
                    np.ones(flat.size, bool) if mask is True else np.ravel(mask)
                )
                picks = rng.choice(
                    candidates, min(n_elements, candidates.size), replace=False
                )
                grad = np.asarray(grads[i], np.float64).ravel()
                checked[key] = []
                for j in picks:
                    auto = grad[j]

                    def tolerance(estimate, auto=auto):
                        return atol + rtol * max(abs(estimate), abs(auto))

                    estimate, error = finite_difference(
                        lambda offset, i=i, j=j: projected(i, j, offset),
                        1e-2 * max(1.0, abs(float(flat[j]))),
                        eps,
                        tolerance,
                    )
                    if error > tolerance(estimate):
                        unverified[key] += 1
                    else:
                        ratio = abs(estimate - auto) / (tolerance(estimate) + error)
                        checked[key].append((ratio, int(j), auto, estimate, error))
        worst = {key: max(found) for key, found in checked.items() if found}
        bad = max(worst.items(), key=lambda kv: kv[1][0], default=None)
        if bad is not None and bad[1][0] > 1:
            key, (ratio, j, auto, estimate, error) = bad
            raise SimulationError(
                f"Gradient mismatch in parameter {key!r}, element {j}: autodiff "
                f"{auto:.6g}, finite differences {estimate:.6g} (+- {error:.2g}); "
                f"the difference is {ratio:.1f} times the tolerance plus that error"
            )
        lost = [key for key in checked if key not in worst]
        if lost:
            warnings.warn(
                "check_gradients verified no element of "
                + ", ".join(f"{key!r} ({unverified[key]} tried)" for key in lost)
                + ": there, finite differences at every step size disagree with "
                "themselves by more than the tolerance (a kink such as a firing "
                "threshold, or float rounding). Try other elements (seed, "
                "n_elements) or other inputs.",
                UserWarning,
                stacklevel=2,
            )
        return {key: worst[key][0] if key in worst else np.nan for key in checked}


def finite_difference(f, h: float, eps: float, tolerance) -> tuple[float, float]:
    """Estimate a derivative at 0 from finite differences, with a bound on its error.

    ``f(offset)`` returns the terms (float64) whose sum is the function at that
    offset. At a step ``s``, ``f`` is taken at ``0``, ``+-s`` and ``+-s/2``:

    - the estimate is the Richardson extrapolation of the central differences
      over ``+-s`` and ``+-s/2`` (exact for cubics);
    - its error is bounded by the two differences' disagreement, plus half the
      amount by which the one-sided differences' spread fails to halve with the
      step (for a smooth function, both are a few times the truncation error;
      together they bound the error of a kink anywhere within ``s``), plus three
      standard deviations of float rounding: each term that changed is taken as
      rounded once, by up to ``eps/2`` of its value, independently.

    The steps ``h``, ``4h``, ``16h`` (rounding falls as the step grows) and
    ``h/4`` (fewer kinks) are tried in turn until the error is within
    ``tolerance(estimate)``; the estimate with the smallest error is returned.
    """
    best = (np.nan, np.inf)
    centre = f(0.0)
    for step in (h, 4 * h, 16 * h, h / 4):
        up, down = f(step), f(-step)
        half_up, half_down = f(step / 2), f(-step / 2)
        wide = (up.sum() - down.sum()) / (2 * step)
        narrow = (half_up.sum() - half_down.sum()) / step
        spread = (up.sum() - 2 * centre.sum() + down.sum()) / step
        half_spread = (half_up.sum() - 2 * centre.sum() + half_down.sum()) / (step / 2)
        # the estimate is (4/3)(half_up - half_down)/s - (1/3)(up - down)/(2s)
        sigma = np.sqrt(np.sum(up[up != down] ** 2) / 12) * eps / step * 1.9
        estimate = narrow + (narrow - wide) / 3
        error = abs(narrow - wide) + abs(spread - 2 * half_spread) / 2 + 3 * sigma
        if error < best[1]:
            best = (estimate, error)
        if error <= tolerance(estimate):
            break
    return best
