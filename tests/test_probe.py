"""mpt.probe (linear / k-NN probes, metrics, the grouped stratified hold-out), label manifests, and
`mpt probe` end to end on tiny time-series encoders and generated labelled series."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from _mpt_helpers import invoke
from mpt.errors import DataError
from mpt.features import Features
from mpt.labels import apply_manifest, read_manifest
from mpt.probe import L2_GRID, accuracy, balanced_accuracy, knn_probe, linear_probe, logreg_c, stratified_split
from test_cli_pretrain import assert_clean_error
from test_embed import make_encoder, write_series_folder

# ----------------------------------------------------------------------------------------------
# metrics and probes on synthetic features


def blobs(n: int, d: int, k: int, spread: float, seed: int, noise_seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` samples of ``k`` Gaussian classes (centres drawn from ``seed``, unit noise from ``noise_seed``)."""
    centres = np.random.default_rng(seed).normal(size=(k, d)) * spread
    y = np.arange(n) % k
    noise = np.random.default_rng([seed, noise_seed]).normal(size=(n, d))
    return (centres[y] + noise).astype(np.float32), y


def test_balanced_accuracy_by_hand() -> None:
    y_true = [0, 0, 0, 0, 1, 1]
    y_pred = [0, 0, 0, 1, 1, 0]
    assert accuracy(y_true, y_pred) == pytest.approx(4 / 6)
    assert balanced_accuracy(y_true, y_pred) == pytest.approx((3 / 4 + 1 / 2) / 2)
    # a class only predicted (2) is not averaged over; a class never predicted right counts as 0
    assert balanced_accuracy([0, 0, 1, 3], [2, 0, 1, 1]) == pytest.approx((1 / 2 + 1 + 0) / 3)
    assert np.isnan(accuracy([], [])) and np.isnan(balanced_accuracy([], []))
    for metric in (accuracy, balanced_accuracy):
        with pytest.raises(ValueError, match="3 labels but 2 predictions"):
            metric([0, 1, 1], [0, 1])


def test_linear_probe_separates_blobs_and_agrees_with_knn() -> None:
    x, y = blobs(300, 20, 3, spread=1.5, seed=0)
    xe, ye = blobs(300, 20, 3, spread=1.5, seed=0, noise_seed=1)  # same classes, fresh samples
    lin = linear_probe(x, y, xe, ye, seed=0)
    knn = knn_probe(x, y, xe, k=20)
    assert accuracy(ye, lin.predictions) >= 0.95
    assert lin.accuracy == accuracy(ye, lin.predictions)
    assert accuracy(ye, knn.predictions) >= 0.9
    assert (lin.predictions == knn.predictions).mean() >= 0.9
    assert lin.regularization in lin.validation and set(lin.validation) == set(L2_GRID)


def test_probes_are_at_chance_on_random_labels() -> None:
    rng = np.random.default_rng(1)
    x, xe = rng.normal(size=(400, 20)), rng.normal(size=(400, 20))
    y, ye = rng.integers(0, 2, 400), rng.integers(0, 2, 400)
    assert accuracy(ye, linear_probe(x, y, xe, seed=0).predictions) <= 0.6
    assert accuracy(ye, knn_probe(x, y, xe).predictions) <= 0.6


def test_probes_keep_the_label_values_cap_k_and_take_no_eval_samples() -> None:
    x, y = blobs(30, 5, 2, spread=4, seed=2)
    for labels in (np.where(y == 0, 3, 7), np.where(y == 0, "cat", "dog")):  # come back as given
        assert np.array_equal(linear_probe(x, labels, x).predictions, labels)
        assert np.array_equal(knn_probe(x, labels, x, k=3).predictions, labels)
    labels = np.where(y == 0, 3, 7)
    # k capped at the 6 training samples: the vote of all six, the nearer ones weighing more
    capped = knn_probe(x[:6], labels[:6], x, k=100).predictions
    assert np.array_equal(capped, knn_probe(x[:6], labels[:6], x, k=6).predictions)
    for result in (linear_probe(x, labels, x[:0], labels[:0]), knn_probe(x, labels, x[:0])):
        assert result.predictions.shape == (0,)
    with pytest.raises(ValueError, match="at least two classes"):
        linear_probe(x, np.zeros(30, dtype=int), x)
    with pytest.raises(ValueError, match="k must be >= 1"):
        knn_probe(x, labels, x, k=0)


def test_sweep_picks_strong_regularisation_on_noise_and_weak_on_plenty() -> None:
    for seed in range(3):
        rng = np.random.default_rng(seed)
        # high-dimensional, few samples, labels independent of the features: only shrinkage helps
        x, y = rng.normal(size=(40, 300)), np.arange(40) % 2
        assert linear_probe(x, y, x[:2], seed=seed).regularization >= 1.0, seed
        # low-dimensional overlapping classes and plenty of samples: not the strongest value
        xb, yb = blobs(600, 5, 3, spread=1.5, seed=seed)
        assert linear_probe(xb, yb, xb[:2], seed=seed).regularization < 10.0, seed
        # separable classes: every strength is perfect on validation, the lowest cross-entropy (weakest) wins
        xs, ys = blobs(60, 5, 2, spread=6, seed=seed)
        res = linear_probe(xs, ys, xs[:2], seed=seed)
        assert set(res.validation.values()) == {1.0} and res.regularization == min(L2_GRID), seed


def test_linear_probe_is_a_direct_scikit_learn_sweep() -> None:
    """The choice rule and refit, recomputed with scikit-learn's own scaler, metrics and a cold start."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score, log_loss
    from sklearn.preprocessing import StandardScaler

    x, y = blobs(150, 8, 3, spread=0.8, seed=4)
    xe, ye = blobs(90, 8, 3, spread=0.8, seed=4, noise_seed=1)
    fit, val = stratified_split(y, None, 0.2, seed=5)

    def fitted(l2: float, xs: np.ndarray, ys: np.ndarray) -> tuple[StandardScaler, LogisticRegression]:
        scaler = StandardScaler().fit(xs)
        model = LogisticRegression(C=1 / (l2 * len(ys)), tol=1e-10, max_iter=10_000)
        return scaler, model.fit(scaler.transform(xs), ys)

    keys = {}
    for l2 in L2_GRID:
        scaler, model = fitted(l2, x[fit], y[fit])
        proba = model.predict_proba(scaler.transform(x[val]))
        keys[l2] = (accuracy_score(y[val], proba.argmax(1)), -log_loss(y[val], proba), l2)
    chosen = max(keys, key=keys.__getitem__)
    scaler, model = fitted(chosen, x, y)
    direct = model.predict(scaler.transform(xe))
    res = linear_probe(x, y, xe, ye, seed=5)
    assert res.regularization == chosen
    assert res.validation == pytest.approx({l2: key[0] for l2, key in keys.items()})
    assert len(set(res.validation.values())) > 1  # the sweep is not decided by ties alone
    assert np.array_equal(res.predictions, direct) and res.accuracy == accuracy_score(ye, direct)


@pytest.mark.parametrize("k", [2, 3])
def test_logreg_c_gives_scikit_learn_the_documented_objective(k: int) -> None:
    """Mean cross-entropy + l2/2·‖W‖² (one weight column per class, bias free), minimised by scipy,
    against LogisticRegression with C = logreg_c(l2, n, k): same weights (two classes: w₁ - w₀)."""
    from scipy.optimize import minimize
    from scipy.special import logsumexp
    from sklearn.linear_model import LogisticRegression

    x, y = blobs(60, 4, k, spread=1.0, seed=6)
    x = x.astype(np.float64)
    n, d, l2 = len(y), x.shape[1], 0.3

    def objective(theta: np.ndarray) -> float:
        w, b = theta[: d * k].reshape(d, k), theta[d * k :]
        logits = x @ w + b
        return float(np.mean(logsumexp(logits, axis=1) - logits[np.arange(n), y]) + 0.5 * l2 * (w * w).sum())

    w = minimize(objective, np.zeros(d * k + k), method="BFGS", options={"gtol": 1e-10}).x[: d * k].reshape(d, k)
    model = LogisticRegression(C=logreg_c(l2, n, k), tol=1e-10, max_iter=10_000).fit(x, y)
    expected = (w[:, 1] - w[:, 0])[None] if k == 2 else w.T
    np.testing.assert_allclose(model.coef_, expected, atol=1e-5)


def test_knn_probe_is_dino_weighted_vote() -> None:
    """Predictions equal a direct numpy computation: standardise, L2-normalise, top-k cosine
    similarity, class votes Σ exp(sim / T) (a tie to the lowest class)."""
    rng = np.random.default_rng(7)
    x, y = rng.normal(size=(80, 6)), rng.integers(0, 4, 80)
    xe = rng.normal(size=(50, 6))
    k, t = 7, 0.1
    mean, std = x.mean(0), x.std(0)
    tr, ev = (x - mean) / std, (xe - mean) / std
    tr /= np.linalg.norm(tr, axis=1, keepdims=True)
    ev /= np.linalg.norm(ev, axis=1, keepdims=True)
    sim = ev @ tr.T
    nearest = np.argsort(-sim, axis=1, kind="stable")[:, :k]
    votes = np.zeros((len(xe), 4))
    for i, idx in enumerate(nearest):
        np.add.at(votes[i], y[idx], np.exp(sim[i, idx] / t))
    direct = votes.argmax(1)
    res = knn_probe(x, y, xe, k=k, temperature=t, chunk=8)  # 8 eval samples at a time
    assert np.array_equal(res.predictions, direct)
    assert len(np.unique(direct)) > 1 and not np.array_equal(direct, knn_probe(x, y, xe, k=1).predictions)


# ----------------------------------------------------------------------------------------------
# the grouped, stratified hold-out


def grouped_labels(seed: int = 0) -> tuple[np.ndarray, list[str]]:
    """3 classes of 5, 10 and 20 sources, each source 1-6 samples (windows of a series)."""
    rng = np.random.default_rng(seed)
    labels, groups = [], []
    for c, n_sources in enumerate((5, 10, 20)):
        for s in range(n_sources):
            size = int(rng.integers(1, 7))
            labels += [c] * size
            groups += [f"c{c}/file{s}.ts"] * size
    order = rng.permutation(len(labels))  # interleaved, as windows of many files would not be
    return np.asarray(labels)[order], [groups[i] for i in order]


def test_stratified_split_is_grouped_stratified_and_seeded() -> None:
    y, groups = grouped_labels()
    tr, ev = stratified_split(y, groups, 0.2, seed=0)
    assert sorted(np.concatenate([tr, ev]).tolist()) == list(range(len(y)))
    assert not {groups[i] for i in tr} & {groups[i] for i in ev}, "a source on both sides"
    for c in range(3):  # every class has at least 5 sources (one per fold): every class held out
        share = np.isin(ev, np.flatnonzero(y == c)).sum() / (y == c).sum()
        assert 0.05 <= share <= 0.4, (c, share)
    again = stratified_split(y, groups, 0.2, seed=0)
    assert all(np.array_equal(a, b) for a, b in zip((tr, ev), again, strict=True))
    assert not np.array_equal(ev, stratified_split(y, groups, 0.2, seed=1)[1])
    # the samples' order does not matter: the same sources are held out
    order = np.random.default_rng(9).permutation(len(y))
    _, ev_perm = stratified_split(y[order], [groups[i] for i in order], 0.2, seed=0)
    assert {groups[order[i]] for i in ev_perm} == {groups[i] for i in ev}


def test_stratified_split_keeps_every_class_in_training() -> None:
    # class 0: two sources (one goes to eval), class 1: a single source (stays in training)
    y = np.array([0, 0, 0, 1, 1])
    groups = ["a", "a", "b", "c", "c"]
    for seed in range(10):  # whichever fold scikit-learn deals source c into
        tr, ev = stratified_split(y, groups, 0.2, seed=seed)
        assert set(y[ev].tolist()) == {0} and set(y[tr].tolist()) == {0, 1}, seed
        assert len({groups[i] for i in ev}) == 1, seed
    # two sources per class and a half held out: never both sources of a class
    y2, g2 = np.repeat([0, 1, 2], 4), [f"s{i // 2}" for i in range(12)]
    for seed in range(10):
        tr, ev = stratified_split(y2, g2, 0.5, seed=seed)
        assert set(y2[tr].tolist()) == {0, 1, 2} and len(ev) > 0, seed
    # no groups: every sample its own group
    tr, ev = stratified_split(np.arange(20) % 2, None, 0.5, seed=3)
    assert len(ev) == 10 and (np.arange(20)[ev] % 2).sum() == 5
    # nothing to hold out: every class in one source
    assert stratified_split(y, ["a", "a", "a", "c", "c"])[1].size == 0


def test_stratified_split_rejects_bad_inputs() -> None:
    with pytest.raises(ValueError, match="labels must be 1-D"):
        stratified_split(np.zeros((3, 2)))
    for fraction in (0, 0.6, 1):
        with pytest.raises(ValueError, match="eval_fraction must be in"):
            stratified_split([0, 1, 0, 1], eval_fraction=fraction)
    with pytest.raises(ValueError, match="4 labels but 3 groups"):
        stratified_split([0, 1, 0, 1], ["a", "b", "c"])


# ----------------------------------------------------------------------------------------------
# label manifests


def test_manifest_matches_paths_relative_paths_names_and_series(tmp_path: Path) -> None:
    data = tmp_path / "data"
    (data / "sub").mkdir(parents=True)
    sources = [str(data / "a.npy"), str(data / "sub" / "b.npy"), str(data / "c.npy"),
               f"{data / 'multi.npy'}#0", f"{data / 'multi.npy'}#1", f"{data / 'multi.npy'}#2"]
    feats = Features(x=np.zeros((6, 2), np.float32), labels=None, sources=sources, classes=[], unlabelled=6)
    csv = tmp_path / "labels.csv"
    csv.write_text(f"path,label\n{data / 'a.npy'},10\nsub/b.npy,2\nc.npy,cat\nmulti.npy,2\n"
                   f'"{data / "multi.npy"}#1",10\n')
    out = apply_manifest(feats, csv, data)
    assert out.classes == ["2", "10", "cat"]  # numbers in numeric order, then names
    # exact path, relative to the data root, file name, file of a series, and one series listed alone
    assert [out.classes[i] for i in out.labels.tolist()] == ["10", "2", "cat", "2", "10", "2"]
    no_header = tmp_path / "no_header.csv"  # the header row is optional
    no_header.write_text(csv.read_text().split("\n", 1)[1])
    assert read_manifest(no_header) == read_manifest(csv) and len(read_manifest(csv)) == 5


def test_manifest_errors_name_the_source_and_the_file(tmp_path: Path) -> None:
    feats = Features(x=np.zeros((2, 2), np.float32), labels=None, sources=["/d/x.npy", "/d/y.npy#4"])
    csv = tmp_path / "labels.csv"
    csv.write_text("x.npy,a\n")
    with pytest.raises(DataError, match=r"labels\.csv: no label for /d/y\.npy#4"):
        apply_manifest(feats, csv, "/d")
    csv.write_text("x.npy,a\nx.npy,b\n")
    with pytest.raises(DataError, match="line 2: x.npy is listed twice"):
        apply_manifest(feats, csv)
    csv.write_text("one/x.npy,a\ntwo/x.npy,b\ny.npy,a\n")
    with pytest.raises(DataError, match="several labels"):
        apply_manifest(feats, csv)
    csv.write_text("x.npy\n")
    with pytest.raises(DataError, match="line 1: expected two columns"):
        apply_manifest(feats, csv)


# ----------------------------------------------------------------------------------------------
# mpt probe end to end


def write_ts(path: Path, per_class: int, seed: int, classes: str = "abc", length: int = 40) -> int:
    """A univariate UCR .ts file: class c is a noisy sine of frequency c + 1; returns the series count."""
    rng = np.random.default_rng(seed)
    t = np.arange(length)
    lines = ["@problemName toy", "@univariate true", f"@classLabel true {' '.join(classes)}", "@data"]
    for i in range(per_class * len(classes)):
        c = i % len(classes)
        x = np.sin(2 * np.pi * t * (c + 1) / 20 + rng.uniform(0, 6)) + 0.2 * rng.normal(size=length)
        lines.append(",".join(f"{v:.4f}" for v in x) + f":{classes[c]}")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return per_class * len(classes)


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("probe")
    write_ts(root / "ucr" / "Toy_TRAIN.ts", 12, seed=0)
    write_ts(root / "ucr" / "Toy_TEST.ts", 6, seed=1)
    return {"root": root, "encoder": make_encoder(root / "enc"), "ucr": root / "ucr"}


def run_report(tmp_path: Path, *args: object) -> tuple[dict, str]:
    out = tmp_path / "report.json"
    result = invoke("probe", *args, "--out", out)
    assert result.exit_code == 0, (result.output, result.exception)
    return json.loads(out.read_text()), result.stdout


def test_probe_holdout_with_random_baseline(setup, tmp_path: Path) -> None:  # noqa: ANN001
    report, stdout = run_report(tmp_path, setup["encoder"], "--data", setup["ucr"], "--baseline", "random")
    for key in ("accuracy", "balanced_accuracy", "n_train", "n_eval", "method", "baseline", "num_classes",
                "classes", "chance", "regularization", "pool", "encoder", "data", "eval_data"):
        assert key in report, key
    assert report["n_train"] + report["n_eval"] == 36  # the _TRAIN file's 36 series, one window each
    assert report["n_eval"] in (6, 7, 8, 9)  # one fold of five: 2 or 3 of each class's 12 series
    assert report["holdout"]["eval_groups"] == report["n_eval"] and report["eval_data"] is None
    assert report["classes"] == ["a", "b", "c"] and report["num_classes"] == 3
    assert report["chance"]["uniform"] == pytest.approx(1 / 3)
    assert report["method"] == "linear" and report["regularization"] in (1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0)
    assert report["encoder"] == str(setup["encoder"]) and report["pool"] == "flat"  # the time-series feature_pool
    base = report["baseline"]
    assert base["kind"] == "random-init" and base["n_train"] == report["n_train"] and base["n_eval"] == report["n_eval"]
    for r in (report, base):
        assert 0 <= r["accuracy"] <= 1 and 0 <= r["balanced_accuracy"] <= 1
    assert "random init" in stdout and "gap" in stdout and "balanced" in stdout
    assert f"{100 * report['accuracy']:.2f}%" in stdout


def test_probe_uses_eval_data_and_knn(setup, tmp_path: Path) -> None:  # noqa: ANN001
    # the same folder twice: split "probe" reads Toy_TRAIN.ts, split "test" reads Toy_TEST.ts
    report, stdout = run_report(tmp_path, setup["encoder"], "--data", setup["ucr"], "--eval-data", setup["ucr"],
                                "--method", "knn", "--pool", "mean")
    assert (report["n_train"], report["n_eval"]) == (36, 18)
    assert report["eval_data"] == str(setup["ucr"]) and report["holdout"] is None
    assert report["method"] == "knn" and report["regularization"] is None and report["baseline"] is None
    assert "knn" in stdout and "random init" not in stdout


def test_probe_with_the_groups_pool(setup, tmp_path: Path) -> None:  # noqa: ANN001
    report, stdout = run_report(tmp_path, setup["encoder"], "--data", setup["ucr"], "--eval-data", setup["ucr"],
                                "--method", "knn", "--pool", "groups")
    assert report["pool"] == "groups" and (report["n_train"], report["n_eval"]) == (36, 18)
    old = invoke("probe", setup["encoder"], "--data", setup["ucr"], "--pool", "channels")
    assert old.exit_code == 2 and "'channels'" in old.stderr and "groups" in old.stderr, old.output


def test_probe_with_a_labels_csv(setup, tmp_path: Path) -> None:  # noqa: ANN001
    data = tmp_path / "data"
    files = write_series_folder(data, n=12)
    csv = tmp_path / "labels.csv"
    csv.write_text("path,label\n" + "".join(f"{f.relative_to(data)},{'odd' if i % 2 else 'even'}\n"
                                            for i, f in enumerate(files)))
    report, _ = run_report(tmp_path, setup["encoder"], "--data", data, "--labels", csv, "--method", "knn")
    assert report["classes"] == ["even", "odd"] and report["n_train"] + report["n_eval"] == 12
    assert report["labels"] == str(csv)
    csv.write_text("".join(f"{f.name},x{i % 2}\n" for i, f in enumerate(files[:-1])))
    assert_clean_error(invoke("probe", setup["encoder"], "--data", data, "--labels", csv),
                       str(files[-1]), str(csv), "no label for")


def test_probe_errors(setup, tmp_path: Path) -> None:  # noqa: ANN001
    enc = setup["encoder"]
    plain = tmp_path / "plain"
    write_series_folder(plain, n=6)
    assert_clean_error(invoke("probe", enc, "--data", plain), str(plain), "the data carries no class labels",
                       "--labels CSV", f"{plain}/<class>/")
    assert_clean_error(invoke("probe", enc, "--data", setup["ucr"], "--eval-data", plain), str(plain),
                       "the data carries no class labels")
    one = tmp_path / "one" / "One_TRAIN.ts"
    write_ts(one, 8, seed=2, classes="a")
    assert_clean_error(invoke("probe", enc, "--data", one), "at least two classes", "'a'")
    assert_clean_error(invoke("probe", tmp_path, "--data", setup["ucr"]), "not an mpt encoder", "config.json")
    assert_clean_error(invoke("probe", enc, "--data", setup["ucr"], "--pool", "cls"), "no CLS token")
    assert_clean_error(invoke("probe", enc, "--data", setup["ucr"], "--set", "data.context=abc"),
                       "data.context", "expected an integer")
    single = tmp_path / "single.ts"  # every class in one series: nothing to hold out
    write_ts(single, 1, seed=3, length=200)
    assert_clean_error(invoke("probe", enc, "--data", single), "--eval-data")


def test_probe_warns_about_eval_classes_unseen_in_training(setup, tmp_path: Path) -> None:  # noqa: ANN001
    write_ts(tmp_path / "train.ts", 8, seed=4, classes="ab")
    write_ts(tmp_path / "test.ts", 4, seed=5, classes="abc")
    out = tmp_path / "r.json"
    result = invoke("probe", setup["encoder"], "--data", tmp_path / "train.ts", "--eval-data", tmp_path / "test.ts",
                    "--out", out)
    assert result.exit_code == 0, result.output
    assert "warning: eval classes not in the training data: c" in result.stderr
    report = json.loads(out.read_text())
    assert report["unseen_eval_classes"] == ["c"] and report["classes"] == ["a", "b", "c"]
    assert report["n_eval"] == 12 and report["accuracy"] <= 8 / 12  # the 4 'c' series can never be right


def test_random_twin_batch_norms_are_recalibrated_on_the_probe_inputs(tmp_path) -> None:  # noqa: ANN001
    """A random twin must not lose to pretraining on normalisation statistics alone."""
    import numpy as np
    import torch

    from mpt.backbone import build_backbone
    from mpt.config import ModelConfig
    from mpt.probe import recalibrate_batch_norms
    from mpt.registry import get_modality
    from mpt_pointcloud.config import PointCloudDataConfig, PointCloudTokenizerConfig

    for i in range(3):
        np.save(tmp_path / f"{i}.npy", (np.random.default_rng(i).random((200, 3)) * 5 + 2).astype(np.float32))
    modality = get_modality("pointcloud")
    data = modality.dataset(tmp_path, "probe", PointCloudDataConfig(num_points=64, cache_points=200))
    torch.manual_seed(0)
    twin = build_backbone(modality, PointCloudTokenizerConfig(num_groups=8, group_size=8, hidden=16),
                          ModelConfig(dim=16, depth=1, heads=2)).eval()
    bn = twin.tokenizer.first[1]
    assert torch.equal(bn.running_mean, torch.zeros_like(bn.running_mean))
    batch = modality.collate([data[i] for i in range(len(data))])
    assert recalibrate_batch_norms(twin, data, modality.collate, batch_size=1)
    assert not twin.training and not bn.training
    with torch.no_grad():  # the statistics are those of the whole probe set (cumulative average)
        x = twin.tokenizer.tokenize(twin.tokenizer.normalize(batch)).patches.reshape(-1, 3)
        pre = twin.tokenizer.first[0](x)
    torch.testing.assert_close(bn.running_mean, pre.mean(0), atol=1e-4, rtol=1e-4)
    ts = build_backbone(get_modality("timeseries"), get_modality("timeseries").tokenizer_config(),
                        ModelConfig(dim=16, depth=1, heads=2))
    assert not recalibrate_batch_norms(ts, data, modality.collate)


def test_groups_pool_keeps_each_channel_apart() -> None:
    """PatchTST folds channels into the batch: the groups pool (was ``channels``) concatenates per-channel means."""
    import torch

    from mpt.backbone import build_backbone
    from mpt.config import ModelConfig
    from mpt.features import pool_output
    from mpt.registry import get_modality
    from mpt_timeseries.config import TimeSeriesTokenizerConfig

    torch.manual_seed(0)
    enc = build_backbone(get_modality("timeseries"), TimeSeriesTokenizerConfig(patch=8, stride=8),
                         ModelConfig(dim=16, depth=1, heads=2)).eval()
    x = torch.randn(2, 3, 64)
    x[1, 2, 40:] = float("nan")  # padding in channel 2 of sample 1
    with torch.no_grad():
        feats = pool_output(enc, x, "groups")
        out = enc(x)
    assert feats.shape == (2, 3 * 16)
    per_row = out.tokens.reshape(2, 3, 8, 16)
    torch.testing.assert_close(feats[0, :16], per_row[0, 0].mean(0))
    torch.testing.assert_close(feats[1, 32:], per_row[1, 2, :5].mean(0))  # 5 valid patches of 8
    # swapping two channels swaps their blocks (the mean pool could not tell them apart)
    with torch.no_grad():
        swapped = pool_output(enc, x[:, [1, 0, 2]], "groups")
        mean_a, mean_b = pool_output(enc, x, "mean"), pool_output(enc, x[:, [1, 0, 2]], "mean")
    torch.testing.assert_close(swapped[:, :16], feats[:, 16:32])
    torch.testing.assert_close(mean_a, mean_b)
    with pytest.raises(ValueError, match="groups"):  # the old name is gone
        pool_output(enc, x, "channels")


def test_more_features_than_rows_are_fitted_in_the_span_of_the_rows() -> None:
    """The row-space fit (representer theorem) scores every input as the full-width fit does."""
    from sklearn.linear_model import LogisticRegression

    from mpt.probe import row_space, standardize

    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(3), 10)
    x = rng.normal(size=(30, 400)) + y[:, None] * rng.normal(size=400) * 0.3
    xe = rng.normal(size=(12, 400))
    full_tr, full_ev = standardize(x, xe)
    span_tr, span_ev = row_space(full_tr, full_ev)
    assert span_tr.shape == (30, 29) and span_ev.shape == (12, 29)  # centred rows: rank n - 1
    fits = [LogisticRegression(C=0.05, tol=1e-10, max_iter=5000).fit(a, y) for a in (full_tr, span_tr)]
    np.testing.assert_allclose(fits[0].decision_function(full_ev), fits[1].decision_function(span_ev), atol=1e-5)
    assert all(a is b or np.array_equal(a, b) for a, b in zip(row_space(x[:5, :3], xe[:, :3]),
                                                               [x[:5, :3], xe[:, :3]], strict=True))  # d <= n: as is
