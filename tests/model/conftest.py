import pytest

from .helpers import random_model, tiny_config


@pytest.fixture(params=["resnet", "swin"])
def tiny_model(request):
    return random_model(tiny_config(request.param))
