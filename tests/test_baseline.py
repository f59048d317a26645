"""Tests of the NumPy baseline (notmnist_ds.baseline and train_baseline.py) on real notMNIST images."""

from __future__ import annotations

import io
import itertools
import json
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import datasets
import numpy as np
import pyarrow as pa
import pytest
from PIL import Image

import train_baseline
from notmnist_ds.baseline.blas import load_blas, matmul_add
from notmnist_ds.baseline.data import (
    balanced_subset,
    normalize_pixels,
    read_labels,
    split_arrays,
)
from notmnist_ds.baseline.errors import BaselineError
from notmnist_ds.baseline.network import Network, softmax_cross_entropy
from notmnist_ds.baseline.png import PNG_SIGNATURE, decode_png_batch
from notmnist_ds.baseline.reports import plot_curves
from notmnist_ds.baseline.trainer import Hyperparameters, Trainer
from notmnist_ds.constants import CLASS_NAMES
from notmnist_ds.sample_tarballs import encode_png

REPO_ROOT = Path(__file__).resolve().parents[1]
FEATURES = datasets.Features(
    {
        "image": datasets.Image(),
        "label": datasets.ClassLabel(names=list(CLASS_NAMES)),
        "font": datasets.Value("string"),
        "source": datasets.Value("string"),
    }
)


@pytest.fixture(scope="module")
def trainer_build(sample_build) -> tuple[Path, dict]:
    """The real build of the sample tarballs, and its rows per config and split."""
    return sample_build.output, sample_build.split_sizes


def run_trainer(args: list[str], tmp_path: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env.update(
        HF_HOME=str(tmp_path / "hf"),
        HF_HUB_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        OPENBLAS_NUM_THREADS="1",
    )
    return subprocess.run(
        [sys.executable, str(REPO_ROOT / "train_baseline.py"), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )


# --- loss and gradients -----------------------------------------------------


def test_softmax_cross_entropy_finite_for_extreme_logits():
    logits = np.array([[1000.0, -1000.0, 0.0], [-1000.0, 1000.0, -1000.0]], np.float32)
    labels = np.array([0, 0])
    loss, gradient = softmax_cross_entropy(logits, labels)
    assert np.isfinite(loss)
    assert np.all(np.isfinite(gradient))
    # Row 0 is certain and right (loss 0), row 1 certain and wrong (loss 2000).
    assert loss == pytest.approx(1000.0, rel=1e-6)
    assert loss.dtype == np.float32
    np.testing.assert_allclose(gradient.sum(axis=1), 0.0, atol=1e-6)


def test_softmax_cross_entropy_matches_direct_formula():
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(7, 10))
    labels = rng.integers(0, 10, 7)
    loss, gradient = softmax_cross_entropy(logits, labels)
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    expected = -np.log(probabilities[np.arange(7), labels]).mean()
    one_hot = np.zeros_like(logits)
    one_hot[np.arange(7), labels] = 1
    assert loss == pytest.approx(expected, rel=1e-12)
    np.testing.assert_allclose(gradient, (probabilities - one_hot) / 7, atol=1e-12)


def finite_difference_check(layer_sizes: list[int], dropout: float) -> None:
    """Compare the trainer's gradients with central differences, in float64."""
    rng = np.random.default_rng(3)
    network = Network(layer_sizes, rng, dtype=np.float64)
    for bias in network.biases:
        bias[...] = rng.normal(scale=0.1, size=bias.shape)
    settings = Hyperparameters(hidden=tuple(layer_sizes[1:-1]), dropout=dropout)
    trainer = Trainer(network, settings, np.random.default_rng(0))
    inputs = rng.uniform(-0.5, 0.5, size=(6, layer_sizes[0]))
    targets = rng.integers(0, layer_sizes[-1], 6)
    trainer._allocate(len(inputs))

    def loss_value() -> float:
        trainer.rng = np.random.default_rng(11)  # the same dropout mask each call
        loss, _ = trainer.forward_backward(inputs, targets)
        return float(loss)

    loss_value()
    analytic = [g.copy() for g in (*trainer.weight_gradients, *trainer.bias_gradients)]
    step = 1e-6
    for parameter, gradient in zip(network.parameters, analytic):
        numeric = np.zeros_like(parameter)
        for index in np.ndindex(parameter.shape):
            saved = parameter[index]
            parameter[index] = saved + step
            above = loss_value()
            parameter[index] = saved - step
            below = loss_value()
            parameter[index] = saved
            numeric[index] = (above - below) / (2 * step)
        np.testing.assert_allclose(gradient, numeric, rtol=1e-5, atol=1e-8)


def test_gradients_match_finite_differences_mlp():
    finite_difference_check([5, 4, 3, 3], dropout=0.0)


def test_gradients_match_finite_differences_with_dropout():
    finite_difference_check([5, 6, 4, 3], dropout=0.4)


def test_gradients_match_finite_differences_logistic():
    finite_difference_check([5, 3], dropout=0.0)


# --- float32 throughout ------------------------------------------------------


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_training_step_keeps_float32(optimizer):
    rng = np.random.default_rng(0)
    network = Network([784, 32, 16, 10], rng)
    settings = Hyperparameters(hidden=(32, 16), optimizer=optimizer, dropout=0.3)
    trainer = Trainer(network, settings, rng)
    pixels = rng.uniform(-0.5, 0.5, size=(300, 784)).astype(np.float32)
    labels = rng.integers(0, 10, 300)
    loss, accuracy = trainer.train_epoch(pixels, labels, learning_rate=0.01)
    step_arrays = [
        *network.parameters,
        *trainer.weight_gradients,
        *trainer.bias_gradients,
        *trainer.first_moments,
        *trainer.second_moments,
        *trainer.outputs,
        *trainer.deltas,
        *trainer.masks,
        trainer.inputs,
    ]
    assert np.isfinite(loss)
    assert 0.0 <= accuracy <= 1.0
    for array in step_arrays:
        assert array.dtype == np.float32, array.shape
    assert network.logits(pixels).dtype == np.float32


def test_train_epoch_rejects_float64_pixels():
    rng = np.random.default_rng(0)
    network = Network([784, 10], rng)
    trainer = Trainer(network, Hyperparameters(hidden=()), rng)
    pixels = np.zeros((20, 784))
    with pytest.raises(TypeError, match="float64"):
        trainer.train_epoch(pixels, np.zeros(20, np.int64), learning_rate=0.1)


def test_network_initialisation_is_float32_he():
    network = Network([784, 2048, 10], np.random.default_rng(0))
    assert network.weights[0].dtype == np.float32
    assert network.weights[0].std() == pytest.approx(np.sqrt(2 / 784), rel=0.01)
    assert not network.biases[0].any()


# --- SGD update and direct BLAS calls -------------------------------------------

requires_blas = pytest.mark.skipif(
    load_blas() is None, reason="NumPy's BLAS is not OpenBLAS, so NumPy does it all"
)
TOLERANCES = {np.float32: {"rtol": 1e-4, "atol": 1e-5}, np.float64: {"rtol": 1e-12}}


@requires_blas
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_blas_gemm_matches_numpy_in_every_layout(dtype):
    blas = load_blas()
    rng = np.random.default_rng(5)
    for rows in (1, 5, 64):
        for orders in itertools.product("CF", repeat=3):
            inputs = np.asarray(rng.standard_normal((rows, 30)), dtype, order=orders[0])
            # The first rows of a taller array: its leading dimension exceeds rows.
            tall = np.asarray(rng.standard_normal((80, 20)), dtype, order=orders[1])
            delta = tall[:rows]
            out = np.asarray(rng.standard_normal((30, 20)), dtype, order=orders[2])
            expected = inputs.T.astype(np.float64) @ delta + 0.9 * out
            assert blas.gemm(inputs.T, delta, out, beta=0.9), (rows, orders)
            np.testing.assert_allclose(out, expected, **TOLERANCES[dtype])


@requires_blas
def test_blas_gemm_declines_mixed_dtypes():
    blas = load_blas()
    a = np.ones((3, 4), np.float32)
    b = np.ones((4, 2), np.float64)
    out = np.zeros((3, 2), np.float32)
    assert not blas.gemm(a, b, out)
    assert not out.any()


@requires_blas
def test_blas_gemm_declines_negative_strides():
    blas = load_blas()
    a = np.arange(12, dtype=np.float32).reshape(3, 4)
    out = np.zeros((3, 2), np.float32)
    assert not blas.gemm(a[::-1], np.ones((4, 2), np.float32), out)
    assert not out.any()


@requires_blas
@pytest.mark.parametrize("order", ["C", "F"])
def test_blas_axpy_matches_numpy(order):
    rng = np.random.default_rng(6)
    x = np.asarray(rng.standard_normal((50, 7)), np.float32, order=order)
    y = np.asarray(rng.standard_normal((50, 7)), np.float32, order=order)
    expected = y - 0.25 * x
    assert load_blas().axpy(-0.25, x, y)
    np.testing.assert_allclose(y, expected, rtol=1e-6, atol=1e-7)


def test_matmul_add_without_blas_matches_formula():
    rng = np.random.default_rng(8)
    a = rng.standard_normal((6, 4))
    b = rng.standard_normal((4, 5))
    out = np.asfortranarray(rng.standard_normal((6, 5)))
    expected = a @ b + 0.5 * out
    matmul_add(a, b, out, 0.5, np.empty_like(out), blas=None)
    np.testing.assert_allclose(out, expected, rtol=1e-12)


@pytest.mark.parametrize("direct_blas", [True, False])
def test_sgd_step_matches_momentum_formula(direct_blas):
    """Check v = momentum * v + lr * (g + l2 * w) and w -= v over three steps."""
    rng = np.random.default_rng(7)
    layer_sizes = [6, 5, 4, 3]
    network = Network(layer_sizes, rng, dtype=np.float64)
    settings = Hyperparameters(
        hidden=(5, 4), learning_rate=0.1, momentum=0.9, l2=0.01, dropout=0.0
    )
    trainer = Trainer(network, settings, rng)
    if not direct_blas:
        trainer.blas = None
    elif trainer.blas is None:
        pytest.skip("NumPy's BLAS is not OpenBLAS, so NumPy does it all")

    # A second network computes plain gradients at the same weights.
    probe_network = Network(layer_sizes, np.random.default_rng(0), dtype=np.float64)
    probe_settings = Hyperparameters(hidden=(5, 4), dropout=0.0)
    probe = Trainer(probe_network, probe_settings, rng)
    trainer._allocate(8)
    probe._allocate(8)
    velocities = [np.zeros_like(p) for p in network.parameters]
    weight_count = len(network.weights)

    for rows in (8, 8, 5):  # the last minibatch is smaller than the buffers
        inputs = rng.uniform(-0.5, 0.5, size=(rows, 6))
        targets = rng.integers(0, 3, rows)
        for copy, parameter in zip(probe_network.parameters, network.parameters):
            np.copyto(copy, parameter)
        probe.forward_backward(inputs, targets)
        gradients = [*probe.weight_gradients, *probe.bias_gradients]
        expected = []
        for index, (parameter, gradient) in enumerate(
            zip(network.parameters, gradients)
        ):
            decay = 0.01 * parameter if index < weight_count else 0.0
            velocities[index] = 0.9 * velocities[index] + 0.1 * (gradient + decay)
            expected.append(parameter - velocities[index])

        trainer.step(inputs, targets, learning_rate=0.1)
        for parameter, value in zip(network.parameters, expected):
            np.testing.assert_allclose(parameter, value, rtol=1e-12, atol=1e-15)
        for velocity, value in zip(trainer.first_moments, velocities):
            np.testing.assert_allclose(velocity, value, rtol=1e-12, atol=1e-15)


@requires_blas
def test_train_epoch_same_with_and_without_blas():
    data = np.random.default_rng(9)
    pixels = data.uniform(-0.5, 0.5, size=(300, 784)).astype(np.float32)
    labels = data.integers(0, 10, 300)
    networks = []
    for direct_blas in (True, False):
        rng = np.random.default_rng(0)
        network = Network([784, 32, 10], rng)
        settings = Hyperparameters(hidden=(32,), batch_size=64, dropout=0.0)
        trainer = Trainer(network, settings, rng)
        if not direct_blas:
            trainer.blas = None
        trainer.train_epoch(pixels, labels, learning_rate=0.05)
        networks.append(network)
    for with_blas, without in zip(networks[0].parameters, networks[1].parameters):
        np.testing.assert_allclose(with_blas, without, rtol=1e-4, atol=1e-6)


def test_network_save_round_trips_weights(tmp_path):
    network = Network([784, 16, 10], np.random.default_rng(0))
    network.save(tmp_path / "weights.npz")
    with np.load(tmp_path / "weights.npz") as saved:
        assert saved["layer_sizes"].tolist() == [784, 16, 10]
        for index, weight in enumerate(network.weights):
            assert saved[f"weight_{index}"].shape == weight.shape
            np.testing.assert_array_equal(saved[f"weight_{index}"], weight)
        for index, bias in enumerate(network.biases):
            np.testing.assert_array_equal(saved[f"bias_{index}"], bias)


# --- input ranges and labels --------------------------------------------------


def test_normalize_pixels_maps_uint8_to_centered_range():
    pixels = np.array([[[0, 255], [127, 128]]], np.uint8).repeat(196, axis=1)
    pixels = pixels.reshape(1, 28, 28)
    out, applied = normalize_pixels(pixels)
    assert applied == "uint8"
    assert out.dtype == np.float32
    assert out.shape == (1, 784)
    assert out.min() == np.float32(-0.5)
    assert out.max() == np.float32(0.5)
    np.testing.assert_allclose(out[0, :4], (pixels.reshape(-1)[:4] - 127.5) / 255)


def test_normalize_pixels_keeps_centered_floats():
    values = np.random.default_rng(0).uniform(-0.5, 0.5, (4, 28, 28)).astype(np.float32)
    out, applied = normalize_pixels(values)
    assert applied == "centered"
    np.testing.assert_array_equal(out, values.reshape(4, 784))


def test_normalize_pixels_shifts_unit_floats():
    values = np.random.default_rng(0).uniform(0.0, 1.0, (4, 784)).astype(np.float32)
    out, applied = normalize_pixels(values)
    assert applied == "unit"
    np.testing.assert_allclose(out, values - 0.5, atol=1e-7)
    assert out.dtype == np.float32


def test_normalize_pixels_treats_float_intensities_as_uint8():
    values = np.array([[0.0, 255.0] * 392], np.float64)
    out, applied = normalize_pixels(values)
    assert applied == "uint8"
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out[0, :2], np.array([-0.5, 0.5], np.float32))


def test_normalize_pixels_rejects_unknown_range():
    with pytest.raises(BaselineError, match=r"\[-3.0, 2.0\]"):
        normalize_pixels(np.array([[-3.0, 2.0] * 392]))


def test_normalize_pixels_rejects_values_outside_stated_range():
    values = np.full((2, 784), 0.9, np.float32)
    with pytest.raises(BaselineError, match="centered range"):
        normalize_pixels(values, "centered")


def test_normalize_pixels_rejects_wrong_image_shape():
    with pytest.raises(BaselineError, match="expected"):
        normalize_pixels(np.zeros((2, 32, 32), np.uint8))


def test_split_arrays_does_not_renormalise_float_images(real_sample):
    pixels, labels = real_sample
    centered = ((pixels[:50].astype(np.float32) - 127.5) / 255).astype(np.float32)
    features = datasets.Features(
        {
            "image": datasets.Array2D((28, 28), "float32"),
            "label": datasets.ClassLabel(names=list(CLASS_NAMES)),
        }
    )
    split = datasets.Dataset.from_dict(
        {"image": centered, "label": labels[:50].tolist()}, features=features
    )
    arrays, classes = split_arrays(datasets.DatasetDict(train=split), "train")
    assert arrays.input_range == "centered"
    assert classes == 10
    np.testing.assert_array_equal(arrays.pixels, centered.reshape(50, 784))
    np.testing.assert_array_equal(arrays.labels, labels[:50])


def test_split_arrays_unit_floats_match_uint8_decoding(real_sample):
    pixels, labels = real_sample
    unit = pixels[:20].astype(np.float32) / 255
    features = datasets.Features(
        {
            "image": datasets.Array2D((28, 28), "float32"),
            "label": datasets.ClassLabel(names=list(CLASS_NAMES)),
        }
    )
    split = datasets.Dataset.from_dict(
        {"image": unit, "label": labels[:20].tolist()}, features=features
    )
    arrays, _ = split_arrays(datasets.DatasetDict(train=split), "train")
    expected, _ = normalize_pixels(pixels[:20])
    assert arrays.input_range == "unit"
    np.testing.assert_allclose(arrays.pixels, expected, atol=1e-6)


def png_split(pixels: np.ndarray, labels: np.ndarray) -> datasets.DatasetDict:
    columns = {
        "image": [{"bytes": encode_png(image), "path": None} for image in pixels],
        "label": labels.tolist(),
        "font": ["Sample Font.ttf"] * len(labels),
        "source": [f"sample-{row}.png" for row in range(len(labels))],
    }
    return datasets.DatasetDict(
        train=datasets.Dataset.from_dict(columns, features=FEATURES)
    )


def test_split_arrays_decodes_png_column(real_sample):
    pixels, labels = real_sample
    arrays, classes = split_arrays(png_split(pixels[:300], labels[:300]), "train")
    expected, _ = normalize_pixels(pixels[:300])
    assert arrays.input_range == "uint8"
    assert arrays.pixels.dtype == np.float32
    assert classes == 10
    np.testing.assert_array_equal(arrays.pixels, expected)
    np.testing.assert_array_equal(arrays.labels, labels[:300])


def test_split_arrays_rejects_centered_range_for_png(real_sample):
    pixels, labels = real_sample
    with pytest.raises(BaselineError, match="--input-range centered"):
        split_arrays(png_split(pixels[:5], labels[:5]), "train", "centered")


def dataset_with_labels(values: list[int]) -> datasets.Dataset:
    """Return a dataset whose ClassLabel column contains ``values``, unvalidated."""
    table = pa.table({"label": pa.array(values, pa.int64())})
    features = datasets.Features(
        {"label": datasets.ClassLabel(names=list(CLASS_NAMES))}
    )
    return datasets.Dataset(table, info=datasets.DatasetInfo(features=features))


def test_read_labels_rejects_label_above_classes():
    with pytest.raises(BaselineError, match="label 12 at row 1"):
        read_labels(dataset_with_labels([3, 12, 4]), "train")


def test_read_labels_rejects_negative_label():
    with pytest.raises(BaselineError, match="label -1 at row 2"):
        read_labels(dataset_with_labels([3, 4, -1]), "test")


def test_read_labels_rejects_non_classlabel_column():
    split = datasets.Dataset.from_dict({"label": [0, 1]})
    with pytest.raises(BaselineError, match="ClassLabel"):
        read_labels(split, "train")


def test_read_labels_returns_classlabel_width():
    labels, classes = read_labels(dataset_with_labels([0, 9, 5]), "train")
    assert classes == 10
    assert labels.dtype == np.int64
    assert labels.tolist() == [0, 9, 5]


# --- PNG decoding --------------------------------------------------------------


def paeth_predictor(left: int, up: int, upper_left: int) -> int:
    estimate = left + up - upper_left
    distances = [abs(estimate - left), abs(estimate - up), abs(estimate - upper_left)]
    return (left, up, upper_left)[distances.index(min(distances))]


def encode_png_with_filters(pixels: np.ndarray, filters: list[int]) -> bytes:
    """Encode a 28x28 grayscale PNG with a chosen filter per row, in two IDATs."""
    rows = pixels.astype(int).tolist()
    stream = bytearray()
    for r, kind in enumerate(filters):
        stream.append(kind)
        above = rows[r - 1] if r else [0] * 28
        for c, value in enumerate(rows[r]):
            left = rows[r][c - 1] if c else 0
            upper_left = above[c - 1] if c else 0
            predictor = [
                0,
                left,
                above[c],
                (left + above[c]) // 2,
                paeth_predictor(left, above[c], upper_left),
            ][kind]
            stream.append((value - predictor) % 256)
    compressed = zlib.compress(bytes(stream))

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data)
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", 28, 28, 8, 0, 0, 0, 0)
    half = len(compressed) // 2
    return (
        PNG_SIGNATURE
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", compressed[:half])
        + chunk(b"IDAT", compressed[half:])
        + chunk(b"IEND", b"")
    )


def test_decode_png_batch_matches_pillow_on_real_sample(real_sample):
    pixels, _ = real_sample
    blobs = [encode_png(image) for image in pixels[:2000]]
    decoded, through_pillow = decode_png_batch(blobs)
    assert through_pillow == 0
    np.testing.assert_array_equal(decoded, pixels[:2000])


def test_decode_png_batch_undoes_every_filter_type(real_sample):
    pixels, _ = real_sample
    blobs = []
    for offset in range(5):
        filters = [(offset + row) % 5 for row in range(28)]
        blobs.append(encode_png_with_filters(pixels[offset], filters))
    decoded, through_pillow = decode_png_batch(blobs)
    assert through_pillow == 0
    for offset, blob in enumerate(blobs):
        np.testing.assert_array_equal(decoded[offset], pixels[offset])
        np.testing.assert_array_equal(
            np.asarray(Image.open(io.BytesIO(blob))), pixels[offset]
        )


def test_decode_png_batch_converts_rgb_through_pillow(real_sample):
    pixels, _ = real_sample
    buffer = io.BytesIO()
    Image.fromarray(pixels[0], mode="L").convert("RGB").save(buffer, format="PNG")
    decoded, through_pillow = decode_png_batch(
        [encode_png(pixels[1]), buffer.getvalue()]
    )
    assert through_pillow == 1
    np.testing.assert_array_equal(decoded[0], pixels[1])
    np.testing.assert_array_equal(decoded[1], pixels[0])


def test_decode_png_batch_scales_16_bit_grayscale(real_sample):
    pixels, _ = real_sample
    buffer = io.BytesIO()
    wide = pixels[2].astype(np.uint16) * 257  # 255 -> 65535
    Image.fromarray(wide).save(buffer, format="PNG")  # mode "I;16"
    decoded, through_pillow = decode_png_batch([buffer.getvalue()])
    assert through_pillow == 1
    np.testing.assert_array_equal(decoded[0], pixels[2])


def test_decode_png_batch_rejects_empty_image(real_sample):
    pixels, _ = real_sample
    with pytest.raises(ValueError, match="image 1 is empty"):
        decode_png_batch([encode_png(pixels[0]), b""])


def test_decode_png_batch_rejects_wrong_size():
    buffer = io.BytesIO()
    Image.new("L", (32, 32)).save(buffer, format="PNG")
    with pytest.raises(ValueError, match="32x32"):
        decode_png_batch([buffer.getvalue()])


def test_decode_png_batch_rejects_truncated_png(real_sample):
    blob = encode_png(real_sample[0][0])
    with pytest.raises(ValueError, match="image 0 is not a readable PNG"):
        decode_png_batch([blob[:50]])


# --- subsets and options ---------------------------------------------------------


def test_balanced_subset_spreads_classes():
    labels = np.repeat(np.arange(10), 30)
    rows = balanced_subset(labels, 53, 10, np.random.default_rng(0))
    per_class = np.bincount(labels[rows], minlength=10)
    assert len(rows) == 53
    assert len(set(rows.tolist())) == 53
    assert per_class.min() == 5
    assert per_class.max() == 6


def test_balanced_subset_rejects_too_many_rows():
    labels = np.repeat(np.arange(10), 3)
    with pytest.raises(BaselineError, match="--train-samples 31"):
        balanced_subset(labels, 31, 10, np.random.default_rng(0))


def test_parse_train_samples_reads_counts_and_all():
    assert train_baseline.parse_train_samples("50,100,all") == [50, 100, None]


def test_parse_train_samples_rejects_words():
    with pytest.raises(BaselineError, match="'many'"):
        train_baseline.parse_train_samples("50,many")


def test_plot_curves_writes_png_for_one_epoch(tmp_path):
    history = [
        {
            "train_loss": 0.5,
            "validation_loss": 0.4,
            "train_accuracy": 0.8,
            "validation_accuracy": 0.85,
        }
    ]
    plot_curves(history, tmp_path / "curves.png")
    with Image.open(tmp_path / "curves.png") as image:
        assert image.format == "PNG"
        assert image.size == (1000, 400)


# --- the command line on a real build folder ------------------------------------


def test_cli_trains_and_writes_outputs(trainer_build, tmp_path):
    folder, counts = trainer_build
    output = tmp_path / "run"
    result = run_trainer(
        [
            "--dataset",
            str(folder),
            "--output",
            str(output),
            "--hidden",
            "64",
            "--epochs",
            "4",
            "--batch-size",
            "32",
            "--lr",
            "0.02",
        ],
        tmp_path,
    )
    assert result.returncode == 0, result.stderr
    metrics = json.loads((output / "metrics.json").read_text())
    assert (output / "curves.png").is_file()
    assert (output / "weights.npz").is_file()

    for key in ("validation_accuracy", "test_accuracy"):
        assert 0.0 <= metrics[key] <= 1.0
    assert metrics["test_accuracy"] > 0.5  # chance is 0.1
    assert metrics["validation_accuracy"] > 0.5
    assert metrics["config"] == "sanitized"
    assert metrics["dataset"] == str(folder)
    assert metrics["layer_sizes"] == [784, 64, 10]
    assert metrics["split_sizes"]["train"] == counts["sanitized"]["train"]
    assert 1 <= metrics["epochs_run"] <= 4
    assert len(metrics["history"]) == metrics["epochs_run"]
    best = max(entry["validation_accuracy"] for entry in metrics["history"])
    assert metrics["validation_accuracy"] == pytest.approx(best)

    confusion = np.array(metrics["confusion_matrix"]["test"])
    assert confusion.shape == (10, 10)
    assert confusion.sum() == counts["sanitized"]["test"]
    assert np.trace(confusion) / confusion.sum() == pytest.approx(
        metrics["test_accuracy"]
    )
    per_letter = metrics["per_class_accuracy"]["test"]
    assert sorted(per_letter) == list(CLASS_NAMES)
    assert all(0.0 <= value <= 1.0 for value in per_letter.values())
    assert metrics["hyperparameters"]["hidden"] == [64]
    assert result.stderr.count("epoch ") >= metrics["epochs_run"]

    with np.load(output / "weights.npz") as weights:
        assert weights["weight_0"].shape == (784, 64)
        assert weights["weight_0"].dtype == np.float32
        assert weights["bias_1"].shape == (10,)
    with Image.open(output / "curves.png") as image:
        assert image.format == "PNG"


def test_cli_compare_prints_table_and_json(trainer_build, tmp_path):
    folder, counts = trainer_build
    output = tmp_path / "run"
    result = run_trainer(
        [
            "--dataset",
            str(folder),
            "--output",
            str(output),
            "--model",
            "logistic",
            "--epochs",
            "3",
            "--compare",
        ],
        tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert "evaluated on" in result.stdout
    table_rows = [line.split()[0] for line in result.stdout.splitlines()]
    assert "raw" in table_rows
    assert "sanitized" in table_rows

    report = json.loads((output / "compare.json").read_text())
    assert report["trained_on"] == "sanitized"
    assert sorted(report["results"]) == ["raw", "sanitized"]
    for config in ("raw", "sanitized"):
        values = report["results"][config]
        assert 0.0 <= values["validation_accuracy"] <= 1.0
        assert 0.0 <= values["test_accuracy"] <= 1.0
        assert values["validation_size"] == counts[config]["validation"]
        assert values["test_size"] == counts[config]["test"]

    metrics = json.loads((output / "metrics.json").read_text())
    sanitized = report["results"]["sanitized"]
    assert sanitized["test_accuracy"] == pytest.approx(metrics["test_accuracy"])


def test_cli_logistic_runs_on_50_and_100_samples(trainer_build, tmp_path):
    folder, _ = trainer_build
    output = tmp_path / "sweep"
    result = run_trainer(
        [
            "--dataset",
            str(folder),
            "--output",
            str(output),
            "--model",
            "logistic",
            "--train-samples",
            "50,100",
            "--epochs",
            "5",
            "--config",
            "raw",
        ],
        tmp_path,
    )
    assert result.returncode == 0, result.stderr
    sweep = json.loads((output / "sweep.json").read_text())
    assert [row["train_samples"] for row in sweep] == [50, 100]
    for count in (50, 100):
        metrics = json.loads((output / f"train-{count}" / "metrics.json").read_text())
        assert metrics["split_sizes"]["train"] == count
        assert metrics["layer_sizes"] == [784, 10]
        assert metrics["test_accuracy"] > 0.2
        assert metrics["config"] == "raw"


def test_cli_rejects_hidden_with_logistic(trainer_build, tmp_path):
    folder, _ = trainer_build
    result = run_trainer(
        [
            "--dataset",
            str(folder),
            "--output",
            str(tmp_path / "run"),
            "--model",
            "logistic",
            "--hidden",
            "100",
        ],
        tmp_path,
    )
    assert result.returncode == 2
    assert "--hidden 100 conflicts with --model logistic" in result.stderr


@pytest.mark.parametrize("text", ["", "10,,5", "1024,"])
def test_parse_sizes_rejects_empty_size(text):
    with pytest.raises(BaselineError) as raised:
        train_baseline.parse_sizes(text, "--hidden")
    assert f"--hidden {text!r} is invalid" in str(raised.value)
    assert "empty size" in str(raised.value)


def test_cli_rejects_output_that_is_file(trainer_build, tmp_path):
    folder, _ = trainer_build
    target = tmp_path / "taken"
    target.write_text("not a folder")
    result = run_trainer(["--dataset", str(folder), "--output", str(target)], tmp_path)
    assert result.returncode == 2
    assert f"--output {target} is a file" in result.stderr
    assert target.read_text() == "not a folder"


def test_cli_reports_missing_dataset(tmp_path):
    missing = tmp_path / "no-such-build"
    result = run_trainer(
        ["--dataset", str(missing), "--output", str(tmp_path / "run")], tmp_path
    )
    assert result.returncode == 2
    assert str(missing) in result.stderr
    assert "notmnist build" in result.stderr


def test_trainer_loads_no_second_blas(trainer_build, tmp_path):
    folder, _ = trainer_build
    script = (
        "import sys, train_baseline\n"
        f"status = train_baseline.main(['--dataset', {str(folder)!r}, '--output', "
        f"{str(tmp_path / 'run')!r}, '--model', 'logistic', '--epochs', '1'])\n"
        "assert status == 0, status\n"
        "maps = open('/proc/self/maps').read()\n"
        "print('modules', sorted(m for m in ('imagehash', 'dedup', 'torch') "
        "if m in sys.modules))\n"
        "print('scipy-blas', 'scipy.libs' in maps)\n"
    )
    env = dict(
        os.environ,
        HF_HOME=str(tmp_path / "hf"),
        HF_HUB_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
    )
    if not Path("/proc/self/maps").is_file():
        pytest.skip("needs /proc/self/maps to list loaded libraries")
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO_ROOT,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "modules []" in result.stdout
    assert "scipy-blas False" in result.stdout
