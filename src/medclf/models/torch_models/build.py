"""The builders of the PyTorch models' registry entries (ModelSpec.build): a config, the input
shape ((n_features,), (channels, height, width) or, for a volume, (1, depth, height, width))
and the number of outputs -> a network."""

from __future__ import annotations

from torch import nn

from medclf.models.torch_models.cnn import SmallCNN
from medclf.models.torch_models.feedforward import FeedforwardNetwork
from medclf.models.torch_models.logistic import LogisticRegression
from medclf.models.torch_models.resnet import ResNet18, ResNet50
from medclf.models.torch_models.volumes import to_3d


def logistic_regression(config: dict, input_shape: tuple, n_outputs: int) -> nn.Module:
    return LogisticRegression(input_shape[0], n_outputs)


def feedforward(config: dict, input_shape: tuple, n_outputs: int) -> nn.Module:
    c = config
    return FeedforwardNetwork(
        input_shape[0], n_outputs, c["hidden_size"], c["layers"], c["activation"], c["dropout"]
    )


def small_cnn(config: dict, input_shape: tuple, n_outputs: int) -> nn.Module:
    channels, side = input_shape[0], input_shape[-1]
    return SmallCNN(
        channels, n_outputs, size=side, width=config["width"], dropout=config["dropout"]
    )


def resnet18(config: dict, input_shape: tuple, n_outputs: int) -> nn.Module:
    return ResNet18(input_shape[0], n_outputs)


def resnet50(config: dict, input_shape: tuple, n_outputs: int) -> nn.Module:
    return ResNet50(input_shape[0], n_outputs)


# Volumes: input_shape is (1, D, H, W). MedMNIST's 3D ResNets keep the CIFAR-style stem at 28
# and 64 alike (experiments/MedMNIST3D/models.py has no other).
def small_cnn3d(config: dict, input_shape: tuple, n_outputs: int) -> nn.Module:
    channels, side = input_shape[0], input_shape[-1]
    cnn = SmallCNN(
        channels,
        n_outputs,
        size=side,
        width=config["width"],
        dropout=config["dropout"],
        convs=config["convs"],
    )
    return to_3d(cnn, "3d")


def resnet18_3d(config: dict, input_shape: tuple, n_outputs: int) -> nn.Module:
    return to_3d(ResNet18(input_shape[0], n_outputs, stem="cifar"), "3d")


def resnet18_25d(config: dict, input_shape: tuple, n_outputs: int) -> nn.Module:
    return to_3d(ResNet18(input_shape[0], n_outputs, stem="cifar"), "2.5d")


def resnet18_acs(config: dict, input_shape: tuple, n_outputs: int) -> nn.Module:
    return to_3d(ResNet18(input_shape[0], n_outputs, stem="cifar"), "acs")


def resnet50_3d(config: dict, input_shape: tuple, n_outputs: int) -> nn.Module:
    return to_3d(ResNet50(input_shape[0], n_outputs, stem="cifar"), "3d")


def resnet50_25d(config: dict, input_shape: tuple, n_outputs: int) -> nn.Module:
    return to_3d(ResNet50(input_shape[0], n_outputs, stem="cifar"), "2.5d")


def resnet50_acs(config: dict, input_shape: tuple, n_outputs: int) -> nn.Module:
    return to_3d(ResNet50(input_shape[0], n_outputs, stem="cifar"), "acs")
