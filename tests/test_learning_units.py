"""Aggregation rules, codecs, partitions and models: known inputs, known outputs."""

from __future__ import annotations

import subprocess
import sys
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from mycelium.errors import ConfigError, InvalidMessage
from mycelium.learn import TrainSettings, Weights
from mycelium.learn.aggregate import (
    AGGREGATORS,
    FedAvg,
    GuardedFedAvg,
    Krum,
    Median,
    TrimmedMean,
    aggregate,
    agreement,
    capped_samples,
    coordinate_median,
    update_matrix,
)
from mycelium.learn.codec import CODECS, decode, encode, get_codec
from mycelium.learn.data import held_out_sizes, node_data, parse_partition, parse_shard, partition_indices
from mycelium.learn.models import build_model, fingerprint, get_weights
from mycelium.learn.train import Learner


def w(*values: float) -> Weights:
    return OrderedDict(a=np.array(values, dtype=np.float32), b=np.array([[values[0]]], dtype=np.float32))


ZERO = w(0.0, 0.0)


def test_fedavg_weights_by_sample_count() -> None:
    result = FedAvg()(ZERO, [(w(0.0, 0.0), 1), (w(4.0, 8.0), 3)])
    assert result["a"].tolist() == [3.0, 6.0]
    assert result["b"].dtype == np.float32


def test_fedavg_of_zero_samples_is_the_plain_mean() -> None:
    assert FedAvg()(ZERO, [(w(0.0, 2.0), 0), (w(2.0, 4.0), 0)])["a"].tolist() == [1.0, 3.0]


def test_median_ignores_one_outlier_per_coordinate() -> None:
    result = Median()(ZERO, [(w(1.0, 1.0), 1), (w(2.0, 2.0), 1), (w(1000.0, -1000.0), 1)])
    assert result["a"].tolist() == [2.0, 1.0]


@settings(max_examples=100, deadline=None)
@given(
    st.integers(1, 12).flatmap(
        lambda rows: arrays(
            st.sampled_from([np.float32, np.float64]),
            (rows, 7),
            elements=st.floats(-1e6, 1e6, width=32),
        )
    )
)
def test_coordinate_median_is_numpys_median_bit_for_bit(rows: np.ndarray) -> None:
    expected = np.median(rows, axis=0)
    got = coordinate_median(rows)
    assert got.dtype == expected.dtype and got.tobytes() == expected.tobytes()


def test_trimmed_mean_drops_the_extremes_before_averaging() -> None:
    contributions = [(w(v, v), 1) for v in (-100.0, 1.0, 2.0, 3.0, 100.0)]
    assert TrimmedMean()(ZERO, contributions)["a"].tolist() == [2.0, 2.0]


@pytest.mark.parametrize(("members", "trimmed"), [(2, 0), (3, 1), (4, 1), (9, 1), (10, 2), (15, 3)])
def test_trimmed_mean_trims_at_least_one_from_each_end_once_three_contribute(
    members: int, trimmed: int
) -> None:
    assert TrimmedMean().trim(members) == trimmed


def test_krum_picks_the_update_closest_to_its_neighbours() -> None:
    honest = [(w(1.0, 1.0), 1), (w(1.1, 1.0), 1), (w(0.9, 1.0), 1), (w(1.0, 1.1), 1)]
    chosen = Krum()(ZERO, [*honest, (w(50.0, -50.0), 1)])
    assert chosen["a"].tolist() == pytest.approx([1.0, 1.0])


def test_krum_with_fewer_than_three_updates_is_fedavg() -> None:
    pair = [(w(0.0, 0.0), 1), (w(2.0, 2.0), 1)]
    assert Krum()(ZERO, pair)["a"].tolist() == FedAvg()(ZERO, pair)["a"].tolist()


@pytest.mark.parametrize(
    ("claims", "capped"),
    [
        ([10, 20, 30], [10, 20, 30]),  # within twice the median
        ([100, 100, 10**9], [100, 100, 200]),  # one inflated claim counts as twice the median
        ([100, 10**9, 10**9], [100, 10**9, 10**9]),  # a majority of liars moves the median: no cap helps
        ([0, 0, 0], [1, 1, 1]),  # nobody claims: equal weights
        ([-5, 10, 10], [0, 10, 10]),  # a negative claim counts as none
    ],
)
def test_sample_claims_are_capped_at_twice_the_rounds_median(claims: list[int], capped: list[float]) -> None:
    assert capped_samples(claims).tolist() == capped


def honest_updates(count: int, seed: int = 0) -> list[tuple[Weights, int]]:
    """Updates around (1, 1, ..., 1) from ZERO-like bases of 40 weights."""
    rng = np.random.default_rng(seed)
    return [
        (OrderedDict(x=(1.0 + 0.3 * rng.standard_normal(40)).astype(np.float32)), 100) for _ in range(count)
    ]


BASE40 = OrderedDict(x=np.zeros(40, dtype=np.float32))


@pytest.mark.parametrize(
    "attacker",
    [
        (OrderedDict(x=np.full(40, -10.0, dtype=np.float32)), 100),  # sign-flip x10
        (OrderedDict(x=np.random.default_rng(5).normal(0, 30, 40).astype(np.float32)), 100),  # noise
        (OrderedDict(x=np.full(40, 1.0, dtype=np.float32)), 10**9),  # honest update, inflated claim
        (OrderedDict(x=np.full(40, 1000.0, dtype=np.float32)), 100),  # right direction, huge
    ],
)
def test_guarded_fedavg_keeps_two_attackers_of_ten_from_moving_the_model(
    attacker: tuple[Weights, int],
) -> None:
    honest = honest_updates(8)
    clean = GuardedFedAvg()(BASE40, honest)["x"]
    attacked = GuardedFedAvg()(BASE40, [*honest, attacker, attacker])["x"]
    plain = FedAvg()(BASE40, [*honest, attacker, attacker])["x"]
    assert np.linalg.norm(attacked - clean) < 0.25 * np.linalg.norm(clean)
    assert np.linalg.norm(plain - clean) > np.linalg.norm(attacked - clean)


def test_guarded_fedavg_of_agreeing_updates_is_their_fedavg() -> None:
    honest = [
        (OrderedDict(x=np.full(40, v, dtype=np.float32)), n) for v, n in ((1.0, 50), (1.0, 80), (1.0, 100))
    ]
    assert GuardedFedAvg()(BASE40, honest)["x"].tolist() == pytest.approx(
        FedAvg()(BASE40, honest)["x"].tolist()
    )


def test_agreement_is_negative_for_an_update_that_points_away_from_the_group() -> None:
    honest = honest_updates(4)
    away = (OrderedDict(x=np.full(40, -1.0, dtype=np.float32)), 100)
    cosine = agreement(update_matrix(BASE40, [*honest, away]))
    assert (cosine[:4] > 0.5).all() and cosine[4] < 0


def test_guarded_fedavg_does_not_depend_on_the_members_own_base() -> None:
    """Members whose bases differ (one missed an update) must still agree on the same set."""
    contributions = honest_updates(6)
    other_base = OrderedDict(x=np.full(40, 0.37, dtype=np.float32))
    first = GuardedFedAvg()(BASE40, contributions)["x"]
    assert first.tobytes() == GuardedFedAvg()(other_base, contributions)["x"].tobytes()


@pytest.mark.parametrize("name", sorted(AGGREGATORS))
def test_every_rule_is_bit_identical_for_the_same_inputs(name: str) -> None:
    rng = np.random.default_rng(1)
    contributions = [
        (OrderedDict(x=rng.standard_normal((30, 7)).astype(np.float32)), int(rng.integers(1, 100)))
        for _ in range(6)
    ]
    base = OrderedDict(x=np.zeros((30, 7), dtype=np.float32))
    first = aggregate(AGGREGATORS[name], base, contributions)
    again = aggregate(AGGREGATORS[name], base, [(OrderedDict(x=c["x"].copy()), n) for c, n in contributions])
    assert first["x"].tobytes() == again["x"].tobytes()


def test_aggregating_nothing_is_an_error() -> None:
    with pytest.raises(ValueError):
        aggregate(FedAvg(), ZERO, [])


# --- codecs --------------------------------------------------------------------------------------

SHAPES = {"layer.weight": (16, 8), "layer.bias": (16,)}


def random_weights(seed: int = 0, scale: float = 1.0) -> Weights:
    rng = np.random.default_rng(seed)
    return OrderedDict((k, (rng.standard_normal(s) * scale).astype(np.float32)) for k, s in SHAPES.items())


@pytest.mark.parametrize(
    ("name", "relative_bound"),
    [("fp32", 0.0), ("fp16", 2**-11), ("int8", 0.5 / 127)],
)
def test_codec_round_trip_error_is_bounded(name: str, relative_bound: float) -> None:
    weights = random_weights(scale=3.0)
    decoded = decode(encode(weights, CODECS[name], "fp"), "fp", SHAPES)
    for key, values in weights.items():
        peak = float(np.max(np.abs(values)))
        error = float(np.max(np.abs(decoded[key] - values)))
        bound = relative_bound * (peak if name == "int8" else float(np.max(np.abs(values))))
        assert error <= bound + 1e-12, (key, error, bound)


def test_int8_is_four_times_smaller_than_fp32() -> None:
    weights = OrderedDict(x=np.ones((256, 256), dtype=np.float32))
    fp32, int8 = (len(encode(weights, CODECS[n], "fp")) for n in ("fp32", "int8"))
    assert fp32 / int8 > 3.9


def test_a_blob_for_another_model_is_refused() -> None:
    blob = encode(random_weights(), CODECS["fp32"], "mlp:aaaa")
    with pytest.raises(InvalidMessage, match="fingerprint"):
        decode(blob, "mlp:bbbb", SHAPES)
    with pytest.raises(InvalidMessage, match="shape"):
        decode(blob, "mlp:aaaa", {"layer.weight": (8, 16), "layer.bias": (16,)})
    with pytest.raises(InvalidMessage, match="names"):
        decode(blob, "mlp:aaaa", {"other": (16, 8), "layer.bias": (16,)})


def test_non_finite_values_are_refused() -> None:
    weights = random_weights()
    weights["layer.bias"][3] = np.nan
    with pytest.raises(InvalidMessage, match="NaN"):
        decode(encode(weights, CODECS["fp32"], "fp"), "fp", SHAPES)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=4096))
def test_decoding_arbitrary_bytes_raises_only_invalid_message(data: bytes) -> None:
    with pytest.raises(InvalidMessage):
        decode(data, "fp", SHAPES)


@settings(max_examples=50, deadline=None)
@given(arrays(np.float32, (16, 8), elements=st.floats(-1e4, 1e4, width=32)), st.sampled_from(sorted(CODECS)))
def test_any_finite_tensor_survives_its_codec(values: np.ndarray, name: str) -> None:
    weights = OrderedDict([("layer.weight", values), ("layer.bias", np.zeros(16, np.float32))])
    decoded = decode(encode(weights, get_codec(name), "fp"), "fp", SHAPES)
    peak = float(np.max(np.abs(values))) or 1.0
    tolerance = {"fp32": 0.0, "fp16": peak * 2**-10 + 1e-3, "int8": peak / 127}[name]
    assert float(np.max(np.abs(decoded["layer.weight"] - values))) <= tolerance + 1e-6


# --- data ----------------------------------------------------------------------------------------


def test_loading_the_data_module_imports_numpy_ma_before_any_thread_needs_it() -> None:
    # np.unique reaches np.ma, which numpy imports on first use; peers of one process load their
    # shards in threads at once, and that lazy import raced into a RecursionError (seen in a mesh)
    probe = "import sys, mycelium.learn.data; print('numpy.ma' in sys.modules)"
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert loaded.stdout.strip() == "True"


def test_partitions_are_reproducible_disjoint_and_cover_the_pool() -> None:
    labels = np.repeat(np.arange(10), 50)
    for text in ("iid", "dirichlet:0.5", "rotated:4"):
        shards = partition_indices(labels, parse_partition(text), 7, seed=3)
        again = partition_indices(labels, parse_partition(text), 7, seed=3)
        assert all(np.array_equal(a, b) for a, b in zip(shards, again, strict=True))
        joined = np.concatenate(shards)
        assert sorted(joined.tolist()) == list(range(len(labels)))


def test_dirichlet_skews_labels_more_as_alpha_shrinks() -> None:
    labels = np.repeat(np.arange(10), 100)

    def skew(alpha: float) -> float:
        shards = partition_indices(labels, parse_partition(f"dirichlet:{alpha}"), 10, seed=0)
        return float(np.mean([np.bincount(labels[s], minlength=10).max() / len(s) for s in shards]))

    assert skew(0.1) > skew(1.0) > skew(100.0)


def test_rotated_shards_are_rotated_by_index_mod_k() -> None:
    data = [node_data("digits", parse_partition("rotated:4"), i, 8, seed=0) for i in (0, 1, 5)]
    assert [d.rotation for d in data] == [0, 1, 1]
    plain = node_data("digits", parse_partition("iid"), 0, 8, seed=0).common_test
    assert np.array_equal(data[1].common_test.x, np.rot90(plain.x, k=1, axes=(2, 3)))


def test_each_node_keeps_disjoint_train_validation_and_test_parts() -> None:
    data = node_data("digits", parse_partition("iid"), 2, 5, seed=0)
    sizes = [len(data.train), len(data.validation), len(data.test)]
    assert min(sizes) > 0 and len(data.common_test) == 359
    parts = [
        set(map(bytes, part.x.reshape(len(part), -1))) for part in (data.train, data.validation, data.test)
    ]
    assert not (parts[0] & parts[1]) and not (parts[0] & parts[2])


@pytest.mark.parametrize("text", ["zipf:1", "dirichlet:0", "rotated:9", "iid:3", "dirichlet:x"])
def test_bad_partitions_are_config_errors(text: str) -> None:
    with pytest.raises(ConfigError):
        parse_partition(text)


def test_bad_shards_are_config_errors() -> None:
    assert parse_shard("3/10") == (3, 10)
    for text in ("10/10", "a/b", "3"):
        with pytest.raises(ConfigError):
            parse_shard(text)


# --- models and training -------------------------------------------------------------------------


def test_models_built_from_many_threads_at_once_start_from_the_same_weights() -> None:
    expected = get_weights(build_model("mlp", 8, seed=0))
    with ThreadPoolExecutor(8) as pool:
        built = list(pool.map(lambda _: get_weights(build_model("mlp", 8, seed=0)), range(64)))
    assert all(all(np.array_equal(w[k], expected[k]) for k in expected) for w in built)


def test_fingerprints_differ_by_architecture_and_input_size() -> None:
    prints = {
        fingerprint(name, get_weights(build_model(name, side, 0)))
        for name in ("mlp", "cnn")
        for side in (8, 28)
    }
    assert len(prints) == 4


def test_local_training_improves_accuracy_and_is_reproducible() -> None:
    data = node_data("digits", parse_partition("iid"), 0, 2, seed=0)
    results = []
    for _ in range(2):
        learner = Learner("mlp", data, seed=7)
        before = learner.evaluate(data.common_test).accuracy
        learner.train(TrainSettings(local_epochs=3, batch_size=32, lr=0.1), round_number=0)
        results.append(
            (before, learner.evaluate(data.common_test).accuracy, learner.weights()["1.weight"].tobytes())
        )
    assert results[0][1] > results[0][0] + 0.3
    assert results[0] == results[1]


def test_digits_are_read_exactly_as_scikit_learn_loads_them() -> None:
    from sklearn.datasets import load_digits

    from mycelium.learn.data import _read_digits

    x, y = _read_digits()
    reference = load_digits()
    assert np.array_equal(x[:, 0], (reference.images / 16.0).astype(np.float32))
    assert np.array_equal(y, reference.target)


@pytest.mark.parametrize(
    ("shard", "validation", "test"),
    [(10, 2, 1), (72, 14, 7), (1437, 287, 144), (6000, 300, 300), (60000, 300, 300)],
)
def test_held_out_splits_are_a_fifth_and_a_tenth_of_a_shard_capped_at_300(shard, validation, test) -> None:
    assert held_out_sizes(shard) == (validation, test)
