"""The run report's plots (`tether.eval.report.write_report`): PPO training curves, the reward model's reliability
diagram and accuracy over training, and gold score against KL, each a base64 PNG built from `report.collect`'s data."""

from __future__ import annotations

import base64
import io

from tether.eval.report import _finite


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def make_figures(report: dict) -> dict[str, str]:
    """name → base64 PNG for every plot the report's data supports."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    figures: dict[str, str] = {}
    ppo = report["ppo"]
    if ppo["present"]:
        fig, axes = plt.subplots(1, 4, figsize=(14, 3))
        for ax, (name, title) in zip(axes, (("reward", "reward"), ("kl", "KL to reference (sequence)"),
                                            ("beta", "β (kl_coef)"), ("length", "response length (tokens)"))):
            s = ppo["series"].get(name)
            ax.set_title(title, fontsize=10)
            ax.set_xlabel("step")
            if s:
                ax.plot(s["steps"], s["values"], marker="." if len(s["steps"]) < 40 else None, label=s["key"])
                ax.set_ylabel(s["key"], fontsize=8)
                gold = ppo["series"].get("gold") if name == "reward" else None
                if gold:
                    ax.plot(gold["steps"], gold["values"], marker="." if len(gold["steps"]) < 40 else None,
                            label=f"{gold['key']} (gold judge)")
                    ax.legend(fontsize=7)
            else:
                ax.text(0.5, 0.5, "not logged", ha="center", va="center", transform=ax.transAxes)
            ax.grid(alpha=0.3)
        figures["ppo_curves"] = _png(fig)
    rm = report["reward_model"]
    if rm["present"]:
        fig, ax = plt.subplots(figsize=(4.2, 4))
        bins = [b for b in rm["reliability"] if b.get("count")]
        centers = [(b["lo"] + b["hi"]) / 2 for b in bins]
        ax.bar(centers, [b["accuracy"] for b in bins], width=[b["hi"] - b["lo"] for b in bins], alpha=0.6,
               edgecolor="black", label="observed frequency")
        ax.plot([0, 1], [0, 1], "k--", lw=1, label="perfect calibration")
        ax.plot([b["mean_prob"] for b in bins], [b["accuracy"] for b in bins], "o", color="C3", label="bin mean P")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_xlabel("predicted P(first preferred) = σ(Δ score)")
        ax.set_ylabel("observed frequency")
        ax.set_title(f"RM reliability: acc {rm['accuracy']:.1%}, ECE {rm['ece']:.3f}", fontsize=10)
        ax.legend(fontsize=7, loc="upper left")
        figures["rm_reliability"] = _png(fig)
        acc = rm.get("training_accuracy")
        if acc:
            fig, ax = plt.subplots(figsize=(4.2, 3))
            ax.plot(acc["steps"], acc["values"], marker="o")
            ax.set_xlabel("step")
            ax.set_ylabel("held-out accuracy")
            ax.set_title("RM accuracy during training", fontsize=10)
            ax.grid(alpha=0.3)
            figures["rm_accuracy"] = _png(fig)
    points = [(p["name"], p["kl"]["value"], p["gold_mean"]) for p in report["policies"]
              if _finite((p.get("kl") or {}).get("value")) is not None and _finite(p.get("gold_mean")) is not None]
    sft = next((p for p in report["policies"] if p["name"] == "sft" and _finite(p.get("gold_mean")) is not None), None)
    if points or report["bon_curves"]:
        fig, ax = plt.subplots(figsize=(5.5, 4))
        for curve in report["bon_curves"]:
            ax.plot([c["kl"] for c in curve["points"]], [c["value"] for c in curve["points"]], "-o", ms=3,
                    label=f"{curve['name']}: best-of-k (k ≤ N), mean gold")
        if sft:
            ax.plot([0], [sft["gold_mean"]], "s", color="black", label="sft (greedy, KL 0)")
        for name, kl, gold in points:
            ax.plot([kl], [gold], "D", ms=7, label=f"{name} (greedy)")
        ax.set_xlabel("KL to the SFT policy (nats)")
        ax.set_ylabel("gold score")
        ax.set_title("gold score vs KL", fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        figures["gold_vs_kl"] = _png(fig)
    return figures
