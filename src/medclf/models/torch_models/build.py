"""The builders of the PyTorch models' registry entries (ModelSpec.build): a config, the input
shape ((n_features,) or (channels, height, width)) and the number of outputs -> a network."""

from __future__ import annotations

from torch import nn

from medclf.models.torch_models.cnn import SmallCNN
from medclf.models.torch_models.feedforward import FeedforwardNetwork
from medclf.models.torch_models.logistic import LogisticRegression
from medclf.models.torch_models.resnet import ResNet18, ResNet50


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
