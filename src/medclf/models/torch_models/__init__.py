"""PyTorch models: Question 2's (defaults in medclf.models.config.DEFAULTS) and the
convolutional ones."""

from medclf.models.torch_models.cnn import SmallCNN
from medclf.models.torch_models.feedforward import FeedforwardNetwork
from medclf.models.torch_models.logistic import LogisticRegression
from medclf.models.torch_models.resnet import ResNet18, ResNet50

__all__ = [
    "FeedforwardNetwork",
    "LogisticRegression",
    "ResNet18",
    "ResNet50",
    "SmallCNN",
]
