"""Convolutional models, batched augmentation and learning-rate schedules."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from medclf.data.registry import REGISTRY
from medclf.errors import ConfigError
from medclf.models.torch_models import ResNet18, ResNet50, SmallCNN
from medclf.models.training.augment import (
    AUGMENT_REASONS,
    OPS,
    SAFE_AUGMENT,
    augment,
    hflip,
    random_affine,
    random_crop,
    vflip,
)
from medclf.models.training.schedules import lr_at

# ---------------------------------------------------------------- parameter counts by formula


def conv(k, c_in, c_out):  # bias-free k x k convolution
    return k * k * c_in * c_out


def bn(c):  # scale and shift
    return 2 * c


def linear(n_in, n_out):
    return (n_in + 1) * n_out


def small_cnn_count(c_in, n_out, width, convs):
    total, prev = 0, c_in
    for w in (width, 2 * width, 4 * width):
        total += conv(3, prev, w) + bn(w) + (convs - 1) * (conv(3, w, w) + bn(w))
        prev = w
    return total + linear(4 * width, n_out)


def basic_block_count(c_in, planes, projected):
    own = conv(3, c_in, planes) + bn(planes) + conv(3, planes, planes) + bn(planes)
    return own + (conv(1, c_in, planes) + bn(planes) if projected else 0)


def bottleneck_count(c_in, planes, projected):
    out = 4 * planes
    own = conv(1, c_in, planes) + bn(planes) + conv(3, planes, planes) + bn(planes)
    own += conv(1, planes, out) + bn(out)
    return own + (conv(1, c_in, out) + bn(out) if projected else 0)


def resnet_count(depth, c_in, n_out, stem_kernel):
    total = conv(stem_kernel, c_in, 64) + bn(64)
    if depth == 18:  # stages (planes, blocks); the first block of stages 2-4 halves the side
        for planes, blocks, first_in in ((64, 2, 64), (128, 2, 64), (256, 2, 128), (512, 2, 256)):
            total += basic_block_count(first_in, planes, projected=planes != 64)
            total += (blocks - 1) * basic_block_count(planes, planes, projected=False)
        return total + linear(512, n_out)
    for planes, blocks, first_in in ((64, 3, 64), (128, 4, 256), (256, 6, 512), (512, 3, 1024)):
        total += bottleneck_count(first_in, planes, projected=True)  # channels x4 or stride 2
        total += (blocks - 1) * bottleneck_count(4 * planes, planes, projected=False)
    return total + linear(2048, n_out)


def n_params(model):
    return sum(p.numel() for p in model.parameters())


def test_small_cnn_count_by_hand():
    # 1 -> 32 -> 32 | 32 -> 64 -> 64 | 64 -> 128 -> 128 | linear 128 -> 2, written out.
    by_hand = (288 + 64 + 9216 + 64) + (18432 + 128 + 36864 + 128)
    by_hand += (73728 + 256 + 147456 + 256) + 129 * 2
    assert by_hand == 287_138 == n_params(SmallCNN(1, 2))


@pytest.mark.parametrize("c_in, n_out, width, convs", [(1, 2, 32, 2), (3, 7, 16, 1), (3, 14, 8, 3)])
def test_small_cnn_count(c_in, n_out, width, convs):
    model = SmallCNN(c_in, n_out, width=width, convs=convs)
    assert n_params(model) == small_cnn_count(c_in, n_out, width, convs)


def test_torchvision_reference_counts():
    # torchvision.models.resnet18() / resnet50(): 3 channels, 1000 classes.
    assert n_params(ResNet18(3, 1000, stem="imagenet")) == 11_689_512
    assert n_params(ResNet50(3, 1000, stem="imagenet")) == 25_557_032
    assert resnet_count(18, 3, 1000, 7) == 11_689_512
    assert resnet_count(50, 3, 1000, 7) == 25_557_032


@pytest.mark.parametrize("c_in, n_out", [(1, 2), (3, 9)])
def test_resnet_counts(c_in, n_out):
    assert n_params(ResNet18(c_in, n_out)) == resnet_count(18, c_in, n_out, 3)
    assert n_params(ResNet18(c_in, n_out, size=224)) == resnet_count(18, c_in, n_out, 7)
    assert n_params(ResNet50(c_in, n_out)) == resnet_count(50, c_in, n_out, 3)


# ---------------------------------------------------------------------------- shapes, stems


@pytest.mark.parametrize("c_in", [1, 3])
@pytest.mark.parametrize("size", [28, 64])
@pytest.mark.parametrize("make", [SmallCNN, ResNet18])
def test_output_shape(make, c_in, size):
    model = make(c_in, 5, size=size)
    assert model(torch.randn(2, c_in, size, size)).shape == (2, 5)


@pytest.mark.parametrize("c_in", [1, 3])
def test_resnet50_output_shape(c_in):
    assert ResNet50(c_in, 4)(torch.randn(2, c_in, 28, 28)).shape == (2, 4)


def test_stems():
    x = torch.randn(2, 1, 28, 28)
    cifar, imagenet = ResNet18(1, 2), ResNet18(1, 2, size=28, stem="imagenet")
    assert cifar.stem_name == "cifar" and ResNet18(1, 2, size=64).stem_name == "imagenet"
    assert cifar.stem(x).shape == (2, 64, 28, 28)  # 3x3 stride 1, no max-pool
    assert imagenet.stem(x).shape == (2, 64, 7, 7)  # 7x7 stride 2, then 3x3 stride-2 max-pool
    with pytest.raises(ConfigError):
        ResNet18(1, 2, stem="vgg")
    with pytest.raises(ConfigError):
        SmallCNN(1, 2, dropout=1.0)


def test_small_cnn_grid_at_larger_sizes():
    # After the first block every size lands near 28x28's 14x14 grid.
    for size, side in ((28, 14), (64, 16), (128, 16), (224, 14)):
        model = SmallCNN(1, 2, size=size)
        first_block = model.features[: 7 + (len(model.features) - 21)]
        assert first_block(torch.randn(1, 1, size, size)).shape[-1] == side


# ---------------------------------------------------------------------- gradients, one step

MODELS = {
    "cnn": lambda: SmallCNN(1, 3, width=8),
    "resnet18": lambda: ResNet18(1, 3),
    "resnet50": lambda: ResNet50(1, 3),
}


def smooth(model):
    """The same network with SiLU for ReLU: with ReLU a 1e-6 nudge of a first-layer weight flips
    some unit's sign in ResNet-18/50 and the difference quotient is off by up to 1 %."""
    for module in list(model.modules()):
        for name, child in module.named_children():
            if isinstance(child, torch.nn.ReLU):
                setattr(module, name, torch.nn.SiLU())
    return model


@pytest.mark.parametrize("name", list(MODELS))
def test_gradient_matches_finite_difference(name):
    torch.manual_seed(0)
    model = smooth(MODELS[name]()).double().train()
    assert not any(isinstance(m, torch.nn.ReLU) for m in model.modules())
    x, y = torch.randn(2, 1, 28, 28, dtype=torch.float64), torch.tensor([0, 2])
    weight = next(model.parameters())  # the first convolution's kernel: every layer lies after it

    def loss():
        return F.cross_entropy(model(x), y)

    loss().backward()
    index, eps, saved = (1, 0, 0, 2), 1e-6, weight.data[1, 0, 0, 2].item()
    weight.data[index] = saved + eps
    with torch.no_grad():
        up = loss().item()
    weight.data[index] = saved - eps
    with torch.no_grad():
        down = loss().item()
    assert weight.grad[index].item() == pytest.approx((up - down) / (2 * eps), rel=1e-6)


def test_sgd_step_lowers_loss_as_predicted():
    torch.manual_seed(0)
    model = SmallCNN(1, 2, width=8).double().train()
    x, y = torch.randn(4, 1, 28, 28, dtype=torch.float64), torch.tensor([0, 1, 1, 0])
    before = F.cross_entropy(model(x), y)
    before.backward()
    lr = 1e-4
    grad_sq = sum((p.grad**2).sum() for p in model.parameters()).item()
    torch.optim.SGD(model.parameters(), lr=lr).step()
    with torch.no_grad():
        after = F.cross_entropy(model(x), y).item()
    # First order: loss(w - lr g) = loss(w) - lr |g|^2.
    assert after < before.item()
    assert before.item() - after == pytest.approx(lr * grad_sq, rel=0.05)


# ------------------------------------------------------------------------------ augmentation


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("op", list(OPS))
def test_augment_shape_and_determinism(op):
    x = torch.randn(16, 1, 8, 8, 8) if op == "dflip" else torch.randn(16, 3, 28, 28)
    a, b = augment(x, (op,), gen(1)), augment(x, (op,), gen(1))
    assert a.shape == x.shape and a.dtype == x.dtype
    assert torch.equal(a, b)
    assert not torch.equal(a, augment(x, (op,), gen(2)))


def test_flips():
    x = torch.randn(32, 1, 28, 28)
    assert torch.equal(hflip(hflip(x, gen(), p=1.0), gen(), p=1.0), x)
    assert torch.equal(hflip(x, gen(), p=1.0), x.flip(-1))
    assert torch.equal(vflip(x, gen(), p=1.0), x.flip(-2))
    assert torch.equal(hflip(x, gen(), p=0.0), x)
    out = hflip(x, gen(), p=0.5)
    mirrored = [torch.equal(o, xi.flip(-1)) for o, xi in zip(out, x, strict=True)]
    kept = [torch.equal(o, xi) for o, xi in zip(out, x, strict=True)]
    assert all(m or k for m, k in zip(mirrored, kept, strict=True))
    assert 0 < sum(mirrored) < len(x)  # some of each, per image


def test_crop():
    x = torch.randn(8, 2, 28, 28)
    assert torch.equal(random_crop(x, gen(), pad=0), x)
    out = random_crop(x, gen(), pad=3, mode="zero")
    padded = F.pad(x, (3, 3, 3, 3))
    offsets = set()
    for o, p in zip(out, padded, strict=True):  # each image is one 28x28 window of its padding
        hits = [
            (i, j)
            for i in range(7)
            for j in range(7)
            if torch.equal(o, p[:, i : i + 28, j : j + 28])
        ]
        assert hits
        offsets.add(hits[0])
    assert len(offsets) > 1
    reflect = random_crop(x, gen(), pad=3)
    assert reflect.shape == x.shape and torch.isin(reflect, x).all()  # mirrored, no new values


def test_affine_identity_and_range():
    x = torch.rand(4, 1, 28, 28)
    assert torch.allclose(random_affine(x, gen(), degrees=0.0, scale=(1.0, 1.0)), x, atol=1e-5)
    out = random_affine(x, gen())
    assert out.min() >= x.min() - 1e-6 and out.max() <= x.max() + 1e-6  # bilinear: no overshoot


def test_augment_rejects_unknown_op():
    with pytest.raises(ConfigError, match="rotate90"):
        augment(torch.zeros(1, 1, 28, 28), ("rotate90",), gen())


def test_safe_augment_table():
    assert set(SAFE_AUGMENT) == set(REGISTRY) == set(AUGMENT_REASONS)
    assert len(SAFE_AUGMENT) == 18  # the 12 2D datasets and the 6 3D ones
    assert all("dflip" not in ops for name, ops in SAFE_AUGMENT.items() if REGISTRY[name].dims == 2)
    assert all(set(ops) <= set(OPS) for ops in SAFE_AUGMENT.values())
    for organ in ("organamnist", "organcmnist", "organsmnist"):  # left/right organ labels
        assert "hflip" not in SAFE_AUGMENT[organ]
    for layered in ("octmnist", "breastmnist", "chestmnist", "pneumoniamnist"):
        assert "vflip" not in SAFE_AUGMENT[layered]


# -------------------------------------------------------------------------------- schedules


def torch_lrs(make_scheduler, epochs, base_lr):
    """The lr PyTorch's own scheduler gives each epoch when stepped once per epoch."""
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=base_lr)
    scheduler = make_scheduler(optimizer)
    lrs = []
    for _ in range(epochs):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return lrs


def test_paper_schedule_equals_multisteplr():
    ours = [lr_at(e, 100, 1e-3, "paper") for e in range(100)]
    oracle = torch_lrs(lambda o: torch.optim.lr_scheduler.MultiStepLR(o, [50, 75], 0.1), 100, 1e-3)
    assert ours == pytest.approx(oracle, rel=1e-12)
    # As MedMNIST's script writes its milestones: [0.5 * num_epochs, 0.75 * num_epochs].
    script = torch_lrs(lambda o: torch.optim.lr_scheduler.MultiStepLR(o, [50.0, 75.0]), 100, 1e-3)
    assert ours == pytest.approx(script, rel=1e-12)
    assert ours[49] == 1e-3 and ours[50] == pytest.approx(1e-4) and ours[75] == pytest.approx(1e-5)
    assert ours[74] == pytest.approx(1e-4)


@pytest.mark.parametrize("epochs", [4, 8, 20, 40])
def test_paper_schedule_other_lengths(epochs):
    milestones = [epochs // 2, 3 * epochs // 4]
    oracle = torch_lrs(lambda o: torch.optim.lr_scheduler.MultiStepLR(o, milestones), epochs, 0.1)
    assert [lr_at(e, epochs, 0.1, "paper") for e in range(epochs)] == pytest.approx(oracle)


def test_paper_schedule_odd_length():
    # 15 epochs: 50 % is 7.5, so epoch 8 is the first at or past it; 75 % is 11.25 -> epoch 12.
    lrs = [lr_at(e, 15, 1.0, "paper") for e in range(15)]
    assert lrs == pytest.approx([1.0] * 8 + [0.1] * 4 + [0.01] * 3)
    assert lr_at(0, 1, 1.0, "paper") == 1.0


@pytest.mark.parametrize("epochs", [7, 100])
def test_cosine_equals_cosineannealinglr(epochs):
    oracle = torch_lrs(
        lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, epochs), epochs, 0.01
    )
    assert [lr_at(e, epochs, 0.01, "cosine") for e in range(epochs)] == pytest.approx(oracle)


def test_cosine_warmup_and_constant():
    lrs = [lr_at(e, 10, 1.0, "cosine", warmup=4) for e in range(10)]
    assert lrs[:5] == pytest.approx([0.25, 0.5, 0.75, 1.0, 1.0])
    assert all(a > b for a, b in zip(lrs[4:], lrs[5:], strict=False)) and lrs[-1] > 0
    assert {lr_at(e, 10, 0.3, "constant") for e in range(10)} == {0.3}
    with pytest.raises(ConfigError):
        lr_at(0, 10, 0.1, "onecycle")
    with pytest.raises(ConfigError):
        lr_at(10, 10, 0.1, "paper")


def test_images_stay_uint8_until_a_batch_and_score_as_float_images(tmp_path):
    """The trainer keeps image splits uint8 (a quarter of float32's memory) and scales each batch
    to the very numbers features.to_images gives the whole split at once."""
    from medclf.data.features import to_images
    from medclf.data.load import load_dataset
    from medclf.data.synthetic import write_synthetic
    from medclf.models.config import make_config
    from medclf.run.family_torch import TorchTrainer

    ds = load_dataset(write_synthetic(tmp_path / "b.npz", "breastmnist", 0.1, 0))
    trainer = TorchTrainer(make_config("torch-cnn", width=8, dataset="b.npz"), ds)
    assert trainer.data["X_train"].dtype == torch.uint8
    assert trainer.features.X_val.shape == (len(ds.val), 1, 28, 28)
    model = trainer.model.eval()
    scores = torch.from_numpy(trainer.scores(model, trainer.features.X_val))
    # the engine runs conv models channels-last on a CPU (torch_engine.channels_last): the
    # reference takes the same layout, so that the comparison stays bit for bit
    x = torch.from_numpy(to_images(ds.val.images)).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        as_float = torch.softmax(model(x).double(), 1)
    assert torch.equal(scores, as_float)


def test_conv_models_run_channels_last_on_a_cpu_with_the_same_maths():
    import copy

    from medclf.models.training import torch_engine as engine

    torch.manual_seed(0)
    ours = SmallCNN(1, 2, width=4)
    plain, start = copy.deepcopy(ours), copy.deepcopy(ours)
    X, y = torch.randn(16, 1, 28, 28), torch.randint(0, 2, (16,))
    plain.eval()
    with torch.no_grad():
        expected = plain(X)
    got = engine.logits_of(ours, X)
    conv = 3  # features[3]: the second convolution, 4 -> 4 channels
    assert ours.features[conv].weight.is_contiguous(memory_format=torch.channels_last)
    assert not plain.features[conv].weight.is_contiguous(memory_format=torch.channels_last)
    assert torch.allclose(got, expected, atol=1e-5)
    # one SGD step on the whole batch: the engine (channels-last) vs a plain contiguous step
    opt_ours = torch.optim.SGD(ours.parameters(), lr=0.5)
    opt_plain = torch.optim.SGD(plain.parameters(), lr=0.5)
    engine.train_epoch(ours, opt_ours, X, y, 16, torch.Generator().manual_seed(0))
    plain.train()
    opt_plain.zero_grad()
    F.cross_entropy(plain(X), y).backward()
    opt_plain.step()
    params = list(zip(ours.parameters(), plain.parameters(), start.parameters(), strict=True))
    assert max(float((q - s).abs().max()) for _, q, s in params) > 1e-3  # the step moved
    for p, q, _ in params:
        assert torch.allclose(p, q, atol=1e-5)


@pytest.mark.parametrize("setting", ["flip", "crop", "flip+crop", "auto"])
def test_every_augment_setting_makes_a_transform_of_known_operations(setting):
    from medclf.run.family_torch import augmentation

    x = torch.randn(8, 1, 28, 28)
    transform = augmentation({"augment": setting}, "breastmnist", gen(3))
    assert transform(x).shape == x.shape  # "flip" named no operation and failed at the first batch
    assert augmentation({"augment": "none"}, "breastmnist", gen(3)) is None
