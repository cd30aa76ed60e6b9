"""Signal sorters: how signals are laid out in the simulator's base arrays.

nengo_jax has no signal sorter of its own yet (NengoDL's ``order_signals`` is
not provided; issue 3): signals keep the layout Nengo's optimizer gives them
(it concatenates the signals of the operators it merges, so merged groups read
contiguous slices), and `~nengo_jax.build.layout.Layout` turns each view into
a static slice or gather. `noop_order_signals` is accepted and changes nothing.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

from nengo.exceptions import ConfigError


def noop_order_signals(plan: Sequence[Sequence], **kwargs) -> tuple[list, list]:
    """Sort nothing: the base signals in the order the plan first uses them.

    Parameters
    ----------
    plan : list of list of Operator
        Groups of operators (as a planner returns them).
    **kwargs
        Accepted, and ignored, for the interface of other sorters.

    Returns
    -------
    signals : list of Signal
        The base signals of the plan's operators, each once, in first-use order.
    plan : list of list of Operator
        ``plan``, unchanged.
    """
    seen = {}
    for group in plan:
        for op in group:
            for sig in op.all_signals:
                seen.setdefault(sig.base, None)
    return list(seen), list(plan)


def check_sorter(sorter) -> None:
    """Raise `ConfigError` if ``sorter`` (a ``configure_settings`` value) is unknown."""
    func = sorter
    while isinstance(func, functools.partial):
        func = func.func
    if sorter is None or func is noop_order_signals:
        return
    raise ConfigError(
        f"sorter={sorter!r} is not supported. nengo_jax lays signals out as "
        "Nengo's optimizer leaves them (sorter=None, the default, or "
        "nengo_jax.graph_optimizer.noop_order_signals); order_signals is not "
        "implemented yet (issue 3)."
    )
