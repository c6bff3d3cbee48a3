"""The figures of a tuning study (``cnnlab tune``): history, parameter importance, intermediate values.

Optuna's own matplotlib plots when ``optuna.visualization`` is there, a plain fallback otherwise.
"""

from __future__ import annotations

import warnings
from pathlib import Path

from cnnlab.files import atomic


def write_plots(study, folder: Path, log=print) -> list[str]:
    """history.png (value per trial and best so far), importance.png (needs >= 2 parameters and
    >= 2 completed trials), intermediate.png (per-epoch values: where pruning cut trials short)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.trial import TrialState

    folder.mkdir(parents=True, exist_ok=True)
    written = []
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    params = {k for t in complete for k in t.params}
    jobs = [("history.png", _plot_history, len(complete) >= 1)]
    jobs.append(("importance.png", _plot_importance, len(complete) >= 2 and len(params) >= 2))
    jobs.append(("intermediate.png", _plot_intermediate, any(t.intermediate_values for t in study.trials)))
    for name, fn, possible in jobs:
        if not possible:
            log(f"{name}: skipped (needs completed trials{' and >= 2 parameters' if 'importance' in name else ''})")
            continue
        try:
            # rc_context: optuna's plots switch the global style to ggplot; keep that local
            with warnings.catch_warnings(), matplotlib.rc_context():
                warnings.simplefilter("ignore")  # optuna marks its matplotlib plots experimental
                fig = fn(study)
            atomic.save_figure(fig, folder / name, dpi=110, bbox_inches="tight")
            plt.close(fig)
            written.append(str(folder / name))
        except (ValueError, RuntimeError, ZeroDivisionError) as exc:  # e.g. all trials scored the same
            log(f"{name}: skipped ({exc})")
    return written


def _figure_of(ax_or_axes):
    ax = ax_or_axes.flat[0] if hasattr(ax_or_axes, "flat") else ax_or_axes
    return ax.figure


def _plot_history(study):
    try:
        from optuna.visualization.matplotlib import plot_optimization_history

        return _figure_of(plot_optimization_history(study))
    except ImportError:
        return _own_history(study)


def _plot_importance(study):
    try:
        from optuna.visualization.matplotlib import plot_param_importances

        return _figure_of(plot_param_importances(study))
    except ImportError:
        return _own_importance(study)


def _plot_intermediate(study):
    try:
        from optuna.visualization.matplotlib import plot_intermediate_values

        return _figure_of(plot_intermediate_values(study))
    except ImportError:
        return _own_history(study)


def _own_history(study):
    """Fallback without optuna.visualization: each completed value and the running best."""
    import matplotlib.pyplot as plt
    from optuna.trial import TrialState

    done = [t for t in study.trials if t.state == TrialState.COMPLETE]
    xs, ys = [t.number for t in done], [t.value for t in done]
    pick = min if study.direction.name == "MINIMIZE" else max
    best = [pick(ys[: i + 1]) for i in range(len(ys))]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(xs, ys, "o", label="trial value")
    ax.step(xs, best, where="post", label="best so far")
    ax.set(xlabel="trial", ylabel=study.user_attrs.get("metric", "value"), title="optimisation history")
    ax.legend()
    return fig


def _own_importance(study):
    import matplotlib.pyplot as plt
    import optuna

    imp = optuna.importance.get_param_importances(study)
    fig, ax = plt.subplots(figsize=(6, 0.5 + 0.4 * len(imp)))
    ax.barh(list(imp)[::-1], list(imp.values())[::-1])
    ax.set(xlabel="importance (fANOVA)", title="parameter importance")
    return fig
