"""Gradient checks: autodiff against finite differences that bound their error.

`GradientCheck.check_gradients` is NengoDL's check, of the Jacobians of probe
outputs with respect to the input data; `GradientCheck.check_parameter_gradients`
checks the gradients with respect to the trainable parameters. Both compare
autodiff with `finite_difference`.
"""

from __future__ import annotations

import warnings
from collections import Counter

import jax
import jax.numpy as jnp
import numpy as np
from nengo.exceptions import SimulationError, ValidationError


class GradientCheck:
    """The gradient checks, mixed into the `.Simulator`."""

    def check_gradients(self, inputs=None, outputs=None, atol=1e-5, rtol=1e-3):
        """Check the gradients of probe outputs with respect to the input data.

        As in NengoDL, the simulator is first reset (`soft_reset`: the probe
        data is kept, the simulation starts again from time 0). Then for each
        probe in ``outputs``, the Jacobian of its output over the run of
        ``inputs`` (the training model: rate neurons, as in `fit`) with respect
        to each input Node's data is taken by autodiff ("analytic") and by
        central finite differences ("numeric").

        An element fails if ``|analytic - numeric| > atol + rtol * |numeric|``
        by more than the finite differences' own error (float rounding, or a
        kink such as a rate neuron's threshold within the step; see
        `finite_difference`). NengoDL counts that error as a failure, so on
        float32 models its check fails where this one passes; in float64 the
        error is negligible. An element whose own error exceeds the tolerance
        at every step size tried cannot be decided: it is left unverified, and
        a warning says how many were.

        Parameters
        ----------
        inputs : list of array or dict, optional
            Data for the input Nodes, each ``(minibatch_size, n_steps,
            size_out)``: a list in the order the Nodes were added to the network
            (as in NengoDL), or a dict of Node (or label) -> array. Input Nodes
            not given run their own output and are not differentiated. Default:
            zeros for every input Node over ``2 * unroll_simulation`` steps (as
            in NengoDL).
        outputs : list of nengo.Probe, optional
            The probes (or labels) whose gradients are checked; default: every
            probe. One probe may be given alone.
        atol : float
            Absolute tolerance.
        rtol : float
            Tolerance relative to the numeric gradient.

        Returns
        -------
        dict
            Probe -> ``{"analytic": (...), "numeric": (...)}``: tuples of float64
            arrays, one per input Node (in input order) of shape ``(output size,
            input size)``, each size flattened over ``(minibatch_size, n_steps,
            dimensions)`` in that order.

        Raises
        ------
        nengo.exceptions.SimulationError
            If a gradient fails the check, or the simulator is closed.
        nengo.exceptions.ValidationError
            If ``inputs`` or ``outputs`` are not valid (a wrong shape, an
            unknown object, a batch other than ``minibatch_size``).
        """
        self._check_open("check_gradients")
        probes = self._checked_probes(outputs)
        nodes = {name: node for node, name in self._inputs.input_nodes.items()}
        if inputs is None:
            n_steps = self.unroll * (2 if self.settings.use_loop else 1)
            inputs = {
                node: np.zeros((self.minibatch_size, n_steps, node.size_out))
                for node in nodes.values()
            }
        x, _ = self._keras_data(inputs, None, None, "check_gradients")
        batch = next(iter(x.values())).shape[0]
        if batch != self.minibatch_size:
            raise ValidationError(
                f"check_gradients takes one minibatch of inputs "
                f"({self.minibatch_size} items); got {batch}",
                attr="inputs",
            )
        wrt = [name for name in x if name in nodes]
        names = [self._inputs.probe_names[probe] for probe in probes]
        self.soft_reset(include_probes=False)
        model = self.keras_model
        with self._runtime.keras(model, "check_gradients", False, commit=False):
            if not model.built:
                model(x)
            values = [v.value for v in model.trainable_variables]
            fixed = [v.value for v in model.non_trainable_variables]

            @jax.jit
            def run(fed):
                out = model.stateless_call(values, fixed, fed, training=True)[0]
                return [out[name].ravel() for name in names]

            fed = {k: jnp.asarray(v) for k, v in x.items()}
            jacobians = [_jacobians(run, fed, name, atol, rtol) for name in wrt]
        eps = float(np.finfo(model.program.layout.dtype).eps)
        result = {}
        for i, probe in enumerate(probes):
            analytic = tuple(jac[0][i] for jac in jacobians)
            numeric = tuple(jac[1][i] for jac in jacobians)
            for name, a, (n, error) in zip(wrt, analytic, numeric, strict=True):
                _compare(probe, nodes[name], a, n, error, atol, rtol, eps)
            result[probe] = {
                "analytic": analytic,
                "numeric": tuple(n for n, _ in numeric),
            }
        return result

    def _checked_probes(self, outputs) -> list:
        if outputs is None:
            return list(self.model.probes)
        if not isinstance(outputs, list | tuple):
            outputs = [outputs]
        return [self._inputs.probe(key, attr="outputs") for key in outputs]

    def check_parameter_gradients(
        self, x=None, n_steps=10, n_elements=4, atol=1e-4, rtol=1e-2, seed=0
    ):
        """Check the gradients with respect to the trainable parameters.

        The function checked is a fixed random projection of every probe's
        output over ``n_steps`` steps of the training model (rates, as in
        `fit`), from the current state; the projection is summed in float64 on
        the host, so that float32 rounding in the sum does not pass for a
        gradient error. For each trainable parameter, ``n_elements`` random
        elements are checked against `finite_difference`, starting from a step
        ``0.01 * max(1, |value|)``. An element whose finite differences' own
        error stays above the tolerance at every step cannot be judged: it
        counts as unverified, not as a mismatch, and a warning names any
        parameter left with no verified element. A verified element fails if
        ``|autodiff - estimate|`` exceeds the tolerance plus the estimate's
        error. The simulator's state is not changed.

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
        nengo.exceptions.SimulationError
            If the model has no trainable parameters, or an element fails.
        """
        self._check_open("check_parameter_gradients")
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
                trial = list(values)
                trial[i] = _moved(values[i], j, offset)
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
                        return atol + rtol * np.maximum(abs(estimate), abs(auto))

                    estimate, error = finite_difference(
                        lambda offset, i=i, j=j: projected(i, j, offset),
                        1e-2 * max(1.0, abs(float(flat[j]))),
                        eps,
                        tolerance,
                    )
                    estimate, error = float(estimate), float(error)
                    if error > tolerance(estimate):
                        unverified[key] += 1
                    else:
                        ratio = abs(estimate - auto) / (tolerance(estimate) + error)
                        checked[key].append((ratio, int(j), auto, estimate, error))
        return _parameter_verdict(checked, unverified)


def _moved(value, j: int, offset: float):
    """``value`` with its flat element ``j`` moved by ``offset`` (in its dtype)."""
    moved = np.asarray(value).ravel().copy()
    moved[j] += offset
    return jnp.asarray(moved.reshape(value.shape), value.dtype)


def _jacobians(run, x: dict, name: str, atol: float, rtol: float):
    """Per output of ``run``: the Jacobians with respect to ``x[name]`` by
    autodiff, and by `finite_difference` with its error, all float64."""
    value = x[name]
    eps = float(np.finfo(value.dtype).eps)
    sizes = [out.size for out in jax.eval_shape(run, x)]
    splits = np.cumsum(sizes)[:-1]

    @jax.jit
    def column(j):
        tangent = {k: jnp.zeros_like(v) for k, v in x.items()}
        tangent[name] = tangent[name].ravel().at[j].set(1).reshape(value.shape)
        return jnp.concatenate(jax.jvp(run, (x,), (tangent,))[1])

    def terms(j, offset):
        outputs = run({**x, name: _moved(value, j, offset)})
        return np.concatenate([np.asarray(out, np.float64) for out in outputs])[:, None]

    centre = terms(0, 0.0)
    analytic, numeric, errors = [], [], []
    flat = np.asarray(value).ravel()
    for j in range(flat.size):
        auto = np.asarray(column(j), np.float64)
        estimate, error = finite_difference(
            lambda offset, j=j: terms(j, offset),
            1e-3 * max(1.0, abs(float(flat[j]))),
            eps,
            lambda estimate: atol + rtol * np.abs(estimate),
            centre=centre,
        )
        analytic.append(auto)
        numeric.append(estimate)
        errors.append(error)
    by_output = [
        np.split(np.stack(cols, axis=1), splits) for cols in (analytic, numeric, errors)
    ]
    return by_output[0], list(zip(by_output[1], by_output[2], strict=True))


def _compare(probe, node, analytic, numeric, error, atol, rtol, eps):
    """Raise if an element of ``analytic`` differs from ``numeric`` by more than
    the tolerance plus the finite differences' ``error``; warn of elements that
    finite differences could not decide."""
    tolerance = atol + rtol * np.abs(numeric)
    decided = error <= tolerance
    excess = np.where(decided, np.abs(analytic - numeric) / (tolerance + error), 0)
    if decided.size and excess.max() > 1:
        i, j = np.unravel_index(np.argmax(excess), excess.shape)
        raise SimulationError(
            f"Gradient check failed for {probe} with respect to the data of "
            f"{node}: {np.count_nonzero(excess > 1)} of {excess.size} elements "
            f"differ; the worst is output element {i}, input element {j}: "
            f"analytic {analytic[i, j]:.6g}, numeric {numeric[i, j]:.6g} "
            f"(+- {error[i, j]:.2g}), tolerance {tolerance[i, j]:.2g} (atol + "
            "rtol * |numeric|)"
        )
    if not decided.all():
        warnings.warn(
            f"check_gradients could not decide {np.count_nonzero(~decided)} of "
            f"{decided.size} elements of the gradient of {probe} with respect to "
            f"{node}: there, finite differences at every step size disagree with "
            "themselves by more than the tolerance (a kink such as a rate "
            f"neuron's threshold, or float rounding at eps={eps:.2g})",
            UserWarning,
            stacklevel=3,
        )


def _parameter_verdict(checked: dict, unverified: Counter) -> dict:
    """The result of `GradientCheck.check_parameter_gradients`, raising on a
    mismatch and warning of parameters with no verified element."""
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
            "check_parameter_gradients verified no element of "
            + ", ".join(f"{key!r} ({unverified[key]} tried)" for key in lost)
            + ": there, finite differences at every step size disagree with "
            "themselves by more than the tolerance (a kink such as a firing "
            "threshold, or float rounding). Try other elements (seed, "
            "n_elements) or other inputs.",
            UserWarning,
            stacklevel=3,
        )
    return {key: worst[key][0] if key in worst else np.nan for key in checked}


def finite_difference(
    f, h: float, eps: float, tolerance, centre=None
) -> tuple[np.ndarray, np.ndarray]:
    """Estimate derivatives at 0 from finite differences, with bounds on their error.

    ``f(offset)`` returns float64 terms, shape ``(..., k)``: each derivative is
    of a sum of ``k`` terms (``centre`` is ``f(0)``, if known). At a step
    ``s``, ``f`` is taken at ``0``, ``+-s`` and ``+-s/2``:

    - the estimate is the Richardson extrapolation of the central differences
      over ``+-s`` and ``+-s/2`` (exact for cubics);
    - its error is bounded by the two differences' disagreement, plus half the
      amount by which the one-sided differences' spread fails to halve with the
      step (for a smooth function, both are a few times the truncation error;
      together they bound the error of a kink anywhere within ``s``), plus three
      standard deviations of float rounding: each term that changed is taken as
      rounded once, by up to ``eps/2`` of its value, independently.

    The steps ``h``, ``4h``, ``16h`` (rounding falls as the step grows) and
    ``h/4`` (fewer kinks) are tried in turn until every error is within
    ``tolerance(estimate)``; each element keeps the estimate with the smallest
    error. Returns the estimates and their errors, shape ``(...)``.
    """
    centre = f(0.0).sum(-1) if centre is None else centre.sum(-1)
    best, best_error = None, None
    for step in (h, 4 * h, 16 * h, h / 4):
        up, down = f(step), f(-step)
        half_up, half_down = f(step / 2), f(-step / 2)
        wide = (up.sum(-1) - down.sum(-1)) / (2 * step)
        narrow = (half_up.sum(-1) - half_down.sum(-1)) / step
        spread = (up.sum(-1) - 2 * centre + down.sum(-1)) / step
        half_spread = (half_up.sum(-1) - 2 * centre + half_down.sum(-1)) / (step / 2)
        # the estimate is (4/3)(half_up - half_down)/s - (1/3)(up - down)/(2s)
        changed = np.where(up != down, up, 0)
        sigma = np.sqrt(np.sum(changed**2, -1) / 12) * eps / step * 1.9
        estimate = narrow + (narrow - wide) / 3
        error = abs(narrow - wide) + abs(spread - 2 * half_spread) / 2 + 3 * sigma
        if best is None:
            best, best_error = estimate, error
        else:
            better = error < best_error
            best = np.where(better, estimate, best)
            best_error = np.where(better, error, best_error)
        if np.all(best_error <= tolerance(best)):
            break
    return best, best_error
