"""``mpt list | pretrain | info | plugin validate | plugin new`` — thin wrappers over the ``mpt`` library."""

from __future__ import annotations

import sys
import time
from enum import Enum
from pathlib import Path

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Masked pretraining (MAE / JEPA) for any modality.")


class Precision(str, Enum):
    no = "no"
    bf16 = "bf16"
    fp16 = "fp16"


class Tracker(str, Enum):
    none = "none"
    tensorboard = "tensorboard"
    wandb = "wandb"


@app.callback()
def _setup() -> None:
    """Warnings print as one ``warning: …`` line, without a source line."""
    import warnings

    warnings.formatwarning = lambda message, *args, **kwargs: f"warning: {message}\n"


def fail(message: str) -> None:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(2)


@app.command("list")
def list_cmd() -> None:
    """Installed modalities, their recipes and status; objectives, maskers and targets."""
    from mpt.config import target_choices
    from mpt.registry import REGISTRIES, get_modality, plugin_status

    statuses = plugin_status()
    if not statuses:
        typer.echo("no modality plugins installed (pip install mpt-pointcloud, …)")
    for st in statuses:
        if st.error:
            typer.secho(f"{st.name:12s} {st.dist} {st.version}  BROKEN: {st.error}", fg=typer.colors.RED)
            continue
        modality = get_modality(st.name)
        typer.echo(f"{st.name:12s} {st.dist} {st.version}  ok — {modality.description}")
        for name, recipe in sorted(modality.recipes().items()):
            default = " (default)" if name == modality.default_recipe else ""
            typer.echo(f"    recipe {name}{default}: {recipe.description}")
        for name, item in sorted(target_choices(modality).items()):
            typer.echo(f"    target {name}: {item.description}")
    for kind, registry in REGISTRIES.items():
        typer.echo(f"{kind}:")
        for name in registry.names():
            item = registry.get(name, kind)
            typer.echo(f"    {name:20s} {item.description}")


@app.command()
def pretrain(
    modality: str = typer.Option(..., "--modality", "-m", help="Modality plugin name (see `mpt list`)."),
    data: Path | None = typer.Option(None, "--data", help="File or folder of data; omit for the demo data."),
    recipe: str | None = typer.Option(None, "--recipe", help="Recipe name (default: the plugin's demo)."),
    objective: str | None = typer.Option(None, "--objective", help="mae, jepa or a plugin's objective "
                                         "(see `mpt list`; default: the recipe's)."),
    config: Path | None = typer.Option(None, "--config", help="YAML file merged over the recipe."),
    set_: list[str] = typer.Option([], "--set", help="Override a key: --set optim.lr=1e-3 (repeatable)."),
    max_steps: int | None = typer.Option(None, "--max-steps", min=1, help="Optimizer steps to run."),
    batch_size: int | None = typer.Option(None, "--batch-size", min=1, help="Samples per step and process."),
    out: Path | None = typer.Option(None, "--out", help="Run folder (default runs/<modality>-<time>)."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out from its last checkpoint."),
    seed: int | None = typer.Option(None, "--seed", help="Random seed."),
    precision: Precision | None = typer.Option(None, "--precision", help="no, bf16 or fp16."),
    checkpoint_every: int | None = typer.Option(None, "--checkpoint-every", min=1, help="Checkpoint interval."),
    log_every: int | None = typer.Option(None, "--log-every", min=1, help="Log interval (steps)."),
    num_workers: int | None = typer.Option(None, "--num-workers", min=0, help="DataLoader workers."),
    threads: int | None = typer.Option(None, "--threads", min=1, help="CPU threads per process (default: the "
                                       "cores other processes leave free, measured at start)."),
    log_with: Tracker | None = typer.Option(None, "--log-with", help="none, tensorboard or wandb."),
    skip_bad_files: bool = typer.Option(False, "--skip-bad-files", help="Skip unreadable files, list them."),
) -> None:
    """Pretrain an encoder; writes config, metrics, checkpoints, figures and encoder/ under --out."""
    from mpt.config import build_config
    from mpt.errors import MptError
    from mpt.registry import get_modality
    from mpt.trainer import pretrain as run

    flags = {"objective": objective,
             "train": {"max_steps": max_steps, "batch_size": batch_size, "seed": seed,
                       "precision": precision.value if precision else None, "checkpoint_every": checkpoint_every,
                       "log_every": log_every, "num_workers": num_workers, "threads": threads,
                       "log_with": log_with.value if log_with else None}}
    out = out or Path("runs") / f"{modality}-{time.strftime('%Y%m%d-%H%M%S')}"
    try:
        mod = get_modality(modality)
        cfg = build_config(mod, recipe, config, set_, flags)
        typer.echo(f"mpt pretrain: {modality} / {cfg.objective} / recipe {cfg.recipe} → {out}", err=True)
        result = run(cfg, mod, out, data=data, resume=resume, skip_bad_files=skip_bad_files)
    except MptError as exc:
        fail(str(exc))
        return
    except KeyboardInterrupt:
        typer.echo(f"\ninterrupted; continue with: mpt pretrain ... --out {out} --resume", err=True)
        raise typer.Exit(130) from None
    if not result.main_process:
        return
    if result.resumed_finished:
        typer.echo(f"nothing to do: the run in {out} already finished its {result.steps} steps "
                   f"(last loss {result.last_loss:.4f}); raise --max-steps to train on")
        return
    minutes, seconds = divmod(int(result.wall_s), 60)
    typer.echo(f"done: {result.steps} steps in {minutes}m{seconds:02d}s, "
               f"loss {result.first_loss:.4f} → {result.last_loss:.4f}")
    if result.skipped:
        typer.echo(f"skipped {len(result.skipped)} bad file(s), listed in {out / 'skipped.txt'}")
    typer.echo(f"encoder: {result.encoder}")
    if result.figures:
        typer.echo(f"figure:  {result.figures[-1]}")
    typer.echo(f"metrics: {out / 'metrics.jsonl'}")
    typer.echo("load it:\n"
               "    import mpt\n"
               f"    encoder = mpt.load_encoder(\"{result.encoder}\")")


@app.command()
def info(path: Path = typer.Argument(..., help="An encoder/ folder or a run folder.")) -> None:
    """Print the encoder card of a pretrained encoder."""
    from mpt.errors import MptError
    from mpt.pretrained import read_card

    if (path / "encoder" / "config.json").is_file():
        path = path / "encoder"
    try:
        card = read_card(path)
    except MptError as exc:
        fail(str(exc))
        return
    enc, tok = card["encoder"], card["tokenizer"]
    typer.echo(f"encoder      {path}")
    typer.echo(f"modality     {card['modality']} (plugin API {card['plugin_api']}, {card['versions']['plugin']})")
    typer.echo(f"architecture ViT depth {enc['depth']}, width {enc['dim']}, {enc['heads']} heads, "
               f"cls token {enc['cls_token']}, {card['num_params']:,} parameters")
    settings = dict(tok["settings"])
    plan = settings.pop("plan", None)
    typer.echo(f"tokenizer    {settings}")
    if isinstance(plan, dict):  # a preprocessing plan the loaded encoder replays (e.g. medical volumes)
        typer.echo("preprocessing plan (replayed by mpt.load_encoder):")
        for key, value in plan.items():
            typer.echo(f"    {key:22s} {value}")
    typer.echo(f"position     {card['pos_embed']['kind']} on {card['pos_embed']['coord_dim']}-d coordinates")
    exported = f", exported: {card['exported_encoder']}" if "exported_encoder" in card else ""
    typer.echo(f"objective    {card['objective']} (recipe {card['recipe']}{exported})")
    typer.echo(f"trained on   {card['trained_on']}")
    typer.echo(f"versions     {card['versions']}")


@app.command("config")
def config_cmd(
    modality: str | None = typer.Option(None, "--modality", "-m", help="Add this modality's data/tokenizer keys."),
    markdown: bool = typer.Option(False, "--markdown", help="Print Markdown (docs/config.md) instead of text."),
) -> None:
    """Every config key with its type, default and meaning (generated from the dataclasses)."""
    from mpt.errors import MptError
    from mpt.reference import markdown as as_markdown
    from mpt.reference import sections
    from mpt.registry import get_modality

    try:
        mod = get_modality(modality) if modality else None
    except MptError as exc:
        fail(str(exc))
        return
    if markdown:
        typer.echo(as_markdown(mod))
        return
    for title, description, rows in sections(mod):
        typer.secho(f"{title}: {description}", bold=True)
        for k in rows:
            typer.echo(f"    {k.key:32s} {k.type:24s} {k.default:14s} {k.meaning}")


class ProbeMethod(str, Enum):
    linear = "linear"
    knn = "knn"


class Baseline(str, Enum):
    none = "none"
    random = "random"


class Pool(str, Enum):
    mean = "mean"
    cls = "cls"
    groups = "groups"
    flat = "flat"


class EmbedSplit(str, Enum):
    probe = "probe"
    test = "test"


def echo_warnings(caught: list) -> None:  # noqa: ANN001 - warnings.WarningMessage
    """Warnings recorded while a command ran, one ``warning:`` line each on stderr."""
    for w in caught:
        typer.secho(f"warning: {w.message}", fg=typer.colors.YELLOW, err=True)


@app.command()
def probe(
    encoder: Path = typer.Argument(..., help="An encoder/ folder (or a run folder)."),
    data: Path = typer.Option(..., "--data", help="Labelled training data: file or folder (split 'probe')."),
    eval_data: Path | None = typer.Option(None, "--eval-data", help="Labelled eval data (split 'test'); "
                                          "default: a grouped, stratified 20 % hold-out of --data."),
    labels: Path | None = typer.Option(None, "--labels", help="CSV 'path,label' giving each file's class."),
    method: ProbeMethod = typer.Option(ProbeMethod.linear, "--method", help="linear or knn."),
    baseline: Baseline = typer.Option(Baseline.none, "--baseline", help="random: also probe a random-init twin."),
    pool: Pool | None = typer.Option(None, "--pool", help="mean (of the tokens), cls (the CLS token), groups "
                                     "(per channel/band group, concatenated) or flat (every token, in order); "
                                     "default: the modality's (time series: flat, others: mean)."),
    batch_size: int = typer.Option(64, "--batch-size", min=1, help="Samples per forward pass."),
    set_: list[str] = typer.Option([], "--set", help="Override a data key: --set data.context=128 (repeatable)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the hold-out, the validation split and the twin."),
    k: int = typer.Option(20, "--k", min=1, help="Neighbours of the knn probe."),
    out: Path | None = typer.Option(None, "--out", help="Write the JSON report here."),
) -> None:
    """Probe a frozen encoder: accuracy of a linear (or k-NN) classifier on its features."""
    import json
    import warnings

    from mpt.errors import MptError
    from mpt.probe import run_probe, summary

    typer.echo(f"mpt probe: {encoder} on {data}" + (f" → {eval_data}" if eval_data else ""), err=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            report = run_probe(encoder, data, eval_data=eval_data, labels=labels, method=method.value,
                               baseline=baseline.value, pool=pool and pool.value, batch_size=batch_size, data_sets=set_,
                               seed=seed, k=k)
            if out is not None:
                out.parent.mkdir(parents=True, exist_ok=True)
                out.write_text(json.dumps(report, indent=2) + "\n")
        except MptError as exc:
            echo_warnings(caught)
            fail(str(exc))
            return
        except OSError as exc:
            fail(f"{out}: cannot write the report ({exc})")
            return
    echo_warnings(caught)
    for line in summary(report):
        typer.echo(line)
    typer.echo(f"report: {out}" if out is not None else "report: not written (add --out REPORT.json)")


@app.command()
def evaluate(
    encoder: Path | None = typer.Argument(None, help="An encoder/ folder or a run folder (omit with --budget)."),
    data: Path = typer.Option(..., "--data", help="Labelled training data: file or folder (split 'probe')."),
    eval_data: Path | None = typer.Option(None, "--eval-data", help="Labelled eval data (split 'test'); "
                                          "default: a grouped, stratified 20 % hold-out of --data."),
    labels: Path | None = typer.Option(None, "--labels", help="CSV 'path,label' giving each file's class."),
    out: Path = typer.Option(..., "--out", help="Folder for evaluation.json, evaluation.png (and the curve)."),
    pool: Pool | None = typer.Option(None, "--pool", help="Frozen features: mean, cls, groups or flat "
                                     "(default: the modality's; time series: flat, others: mean)."),
    eval_set: list[str] = typer.Option([], "--eval-set", help="Data override for the evaluation only: "
                                       "--eval-set data.crop_pct=1.0 (repeatable)."),
    finetune_steps: int = typer.Option(300, "--finetune-steps", min=0, help="Steps of the short fine-tune "
                                       "(0: no fine-tune)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the hold-out, the probes, the twin and the fine-tune."),
    k: int = typer.Option(20, "--k", min=1, help="Neighbours of the k-NN probe."),
    curve: bool = typer.Option(False, "--curve", help="Also probe the run's encoders/step-N snapshots."),
    budget: float | None = typer.Option(None, "--budget", min=0.01, help="Pretrain first, for this many "
                                        "minutes, into OUT/run with snapshots, and draw the curve."),
    modality: str | None = typer.Option(None, "--modality", "-m", help="With --budget: the modality."),
    recipe: str | None = typer.Option(None, "--recipe", help="With --budget: the recipe (default the demo)."),
    set_: list[str] = typer.Option([], "--set", help="With --budget: a pretraining override (repeatable)."),
    points: int = typer.Option(8, "--points", min=1, help="With --budget: snapshots along the run."),
) -> None:
    """Evaluate an encoder on one split: linear, k-NN, fine-tune, its random-init twin and raw baselines."""
    import json
    import warnings

    from mpt.curve import curve_figure, pretrain_for_budget, run_curve
    from mpt.errors import MptError
    from mpt.evaluation import figure, run_evaluation, table
    from mpt.registry import get_modality

    if (budget is None) == (encoder is None):
        fail("give an ENCODER folder, or --budget MINUTES with --modality to pretrain one first")
        return
    if budget is not None and modality is None:
        fail("--budget needs --modality (the modality to pretrain)")
        return
    if budget is None and (set_ or recipe or modality):
        fail("--set, --recipe and --modality shape the pretraining of --budget; to change the evaluation's data "
             "use --eval-set data.KEY=VALUE")
        return
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            extra: dict = {}
            if budget is not None:
                assert modality is not None
                typer.echo(f"mpt evaluate: pretraining {modality} for {budget:g} min on {data} → {out / 'run'}",
                           err=True)
                run = pretrain_for_budget(get_modality(modality), data, out, budget, recipe=recipe, sets=set_,
                                          points=points)
                encoder, curve = run.out, True
                extra["budget"] = {"minutes": budget, "steps": run.steps, "s_per_step": run.s_per_step,
                                   "wall_s": run.wall_s, "first_loss": run.first_loss, "last_loss": run.last_loss,
                                   "sets": run.sets, "recipe": recipe}
            assert encoder is not None
            typer.echo(f"mpt evaluate: {encoder} on {data}" + (f" → {eval_data}" if eval_data else ""), err=True)
            report = run_evaluation(encoder, data, eval_data=eval_data, labels=labels, pool=pool and pool.value,
                                    data_sets=eval_set, seed=seed, k=k, finetune_steps=finetune_steps)
            report.update(extra)
            out.mkdir(parents=True, exist_ok=True)
            figure(report, out / "evaluation.png")
            if curve:
                report["curve"] = run_curve(encoder, data, eval_data=eval_data, labels=labels, pool=pool and pool.value,
                                            data_sets=eval_set, seed=seed, k=k)
                raw = report["goal"]["raw_1nn"]
                curve_figure(report["curve"], out / "curve.png", raw_1nn=raw, title=f"{report['modality']}: {data}")
            (out / "evaluation.json").write_text(json.dumps(report, indent=2) + "\n")
        except MptError as exc:
            echo_warnings(caught)
            fail(str(exc))
            return
        except OSError as exc:
            fail(f"{out}: cannot write ({exc})")
            return
    echo_warnings(caught)
    for line in table(report):
        typer.echo(line)
    typer.echo(f"report: {out / 'evaluation.json'}, figure: {out / 'evaluation.png'}"
               + (f", curve: {out / 'curve.png'}" if curve else ""))


@app.command()
def embed(
    encoder: Path = typer.Argument(..., help="An encoder/ folder (or a run folder)."),
    data: Path = typer.Option(..., "--data", help="File or folder of data."),
    out: Path = typer.Option(..., "--out", help="Output .npy (+ FILE.npy.sources.txt) or .parquet file, or a "
                             "modality's own format (satellite: a .tif feature raster, one pixel per patch)."),
    pool: Pool = typer.Option(Pool.mean, "--pool", help="mean (of the tokens), cls (the CLS token), groups "
                                  "(per channel/band group, concatenated) or flat (every token, in order)."),
    split: EmbedSplit = typer.Option(EmbedSplit.probe, "--split", help="probe (training files) or test "
                                     "(held-out files, where the data has an official split)."),
    batch_size: int = typer.Option(64, "--batch-size", min=1, help="Samples per forward pass."),
    set_: list[str] = typer.Option([], "--set", help="Override a data key: --set data.context=128 (repeatable)."),
) -> None:
    """Write one embedding per sample of --data (frozen encoder, dataset order)."""
    import warnings

    from mpt.embeddings import check_embed_target, write_embeddings
    from mpt.errors import MptError
    from mpt.features import check_pool, data_config, extract_features, open_dataset
    from mpt.pretrained import load_encoder, read_card
    from mpt.probe import encoder_folder

    path = encoder_folder(encoder)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            card = read_card(path)
            writer = modality_writes(card, out)
            if writer is not None:  # the modality's own output format (e.g. a satellite feature raster)
                done = writer.write_features(load_encoder(path), data, out, data_config(card, writer, set_),
                                             batch_size=batch_size)
                echo_warnings(caught)
                typer.echo(f"wrote {done}")
                return
            check_embed_target(out)
            backbone = load_encoder(path)
            check_pool(backbone, pool.value)
            dataset, modality = open_dataset(card, data, split.value, set_)
            feats = extract_features(backbone, dataset, batch_size=batch_size, pool=pool.value,
                                     collate=modality.collate)
            meta = {"encoder": str(path), "modality": card["modality"], "pool": pool.value,
                    "split": split.value, "data": str(data)}
            written = write_embeddings(feats, out, metadata=meta)
        except MptError as exc:
            echo_warnings(caught)
            fail(str(exc))
            return
        except OSError as exc:
            fail(f"{out}: cannot write ({exc})")
            return
    echo_warnings(caught)
    n, d = feats.x.shape
    typer.echo(f"wrote {n} × {d} float32 embeddings (pool {pool.value}) to {written[0]}")
    if len(written) > 1:
        typer.echo(f"sources: {written[1]}")


def modality_writes(card: dict, out: Path):  # noqa: ANN201 - the card's Modality, or None
    """The card's modality when it writes ``out``'s file type itself (``Modality.feature_suffixes``)."""
    from mpt.registry import get_modality

    modality = get_modality(card["modality"])
    return modality if out.suffix.lower() in modality.feature_suffixes else None


plugin_app = typer.Typer(no_args_is_help=True, help="Tools for modality plugin authors.")
app.add_typer(plugin_app, name="plugin")


@plugin_app.command("validate")
def plugin_validate(
    name: str = typer.Argument(..., help="Modality name (see `mpt list`)."),
    set_: list[str] = typer.Option([], "--set", help="Config override for the tiny test model (repeatable)."),
) -> None:
    """Run the conformance checks (mpt.testing) on a modality plugin and its demo data."""
    from mpt.registry import plugin_version
    from mpt.testing import validate

    typer.echo(f"validating modality '{name}' ({plugin_version(name)}) on its demo data")
    results = validate(name, set_)
    for r in results:
        mark = typer.style("ok  ", fg=typer.colors.GREEN) if r.ok else typer.style("FAIL", fg=typer.colors.RED)
        typer.echo(f"  {mark}  {r.name}")
        for line in r.detail.splitlines():
            typer.echo(f"          {line}")
    failed = [r.name for r in results if not r.ok]
    if not failed:
        typer.secho(f"all {len(results)} checks passed", fg=typer.colors.GREEN)
        return
    skipped = " (the other checks need it and did not run)" if len(results) == 1 else ""
    typer.secho(f"{len(failed)} of {len(results)} checks failed: {', '.join(failed)}{skipped}", fg=typer.colors.RED)
    raise typer.Exit(1)


@plugin_app.command("new")
def plugin_new(
    name: str = typer.Argument(..., help="Modality name: a lowercase Python identifier, e.g. wave."),
    dir_: Path = typer.Option(Path("."), "--dir", help="Folder in which to create mpt-NAME/."),
) -> None:
    """Create mpt-NAME/, an installable modality plugin that passes its tests and validate as generated."""
    from mpt.registry import list_modalities
    from mpt_cli.scaffold import ScaffoldError, scaffold

    try:
        target, files = scaffold(name, dir_, list_modalities())
    except ScaffoldError as exc:
        fail(str(exc))
        return
    typer.echo(f"created {target}/ (modality '{name}', package mpt_{name}):")
    for f in files:
        typer.echo(f"    {f}")
    typer.echo("next:\n"
               f"    pip install -e {target}\n"
               f"    pytest {target / 'tests'}\n"
               f"    mpt plugin validate {name}\n"
               f"    mpt pretrain --modality {name}\n"
               f"then adapt the reader (io.py), the tokenizer and recipes/demo.yaml: see {target / 'README.md'}")


def main() -> None:
    try:
        app()
    except BrokenPipeError:
        sys.exit(1)
