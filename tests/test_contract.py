"""The layer contract's shared rules (``contract.py``), pinned on their own: hand-worked output
sizes, every error message, and the two implementations exposing the same functions and sharing
nothing but the contract."""
import inspect
import re

import numpy as np
import pytest

import contract
import fast.nn.kernels
import fast.nn.layers
import fast.runtime
import reference.layers

from helpers import IMPLS


def _names(*numbers):
    """A regex matching a message that mentions each number as a whole number (1 is not 12)."""
    return "".join(rf"(?=.*(?<![\d.]){re.escape(str(n))}(?![\d.]))" for n in numbers)


def _ones(*shape):
    return np.ones(shape)


ERROR_CASES = {
    # conv: (5 - 7) // 1 + 1 = -1 rows
    "conv output below 1": (lambda m: m.conv2d_forward(_ones(1, 1, 5, 5), _ones(1, 1, 7, 7),
                                                       _ones(1)), (5, 7)),
    # conv: height fine, width (4 - 6) // 1 + 1 = -1
    "conv output width below 1": (lambda m: m.conv2d_forward(_ones(1, 1, 9, 4),
                                                             _ones(1, 1, 3, 6), _ones(1)), (4, 6)),
    # conv with padding: (2 + 2 - 5) // 1 + 1 = 0
    "conv padded output below 1": (lambda m: m.conv2d_forward(_ones(1, 1, 2, 2),
                                                              _ones(1, 1, 5, 5), _ones(1),
                                                              pad=1), (2, 5)),
    "pool output below 1": (lambda m: m.maxpool2d_forward(_ones(1, 1, 3, 3), size=4), (3, 4)),
    # pool: height (6 - 3) // 1 + 1 = 4, width (2 - 3) // 1 + 1 = 0
    "pool output width below 1": (lambda m: m.maxpool2d_forward(_ones(1, 1, 6, 2), size=3,
                                                                stride=1), (2, 3)),
    "conv channel mismatch": (lambda m: m.conv2d_forward(_ones(1, 3, 4, 4), _ones(2, 5, 1, 1),
                                                         _ones(2)), (3, 5)),
    # shapes made of the rank itself: a message naming the rank or the shape both pass
    "conv x 3-D": (lambda m: m.conv2d_forward(_ones(3, 3, 3), _ones(1, 3, 1, 1), _ones(1)), (3,)),
    "conv x 5-D": (lambda m: m.conv2d_forward(_ones(5, 5, 5, 5, 5), _ones(1, 5, 1, 1),
                                              _ones(1)), (5,)),
    "conv w 3-D": (lambda m: m.conv2d_forward(_ones(1, 2, 4, 4), _ones(3, 3, 3), _ones(3)), (3,)),
    "pool x 3-D": (lambda m: m.maxpool2d_forward(_ones(3, 3, 3)), (3,)),
    "pool x 2-D": (lambda m: m.maxpool2d_forward(_ones(2, 2)), (2,)),
    "negative label": (lambda m: m.softmax_cross_entropy(_ones(2, 3), np.array([0, -1])), (-1,)),
    "label equal to class count": (lambda m: m.softmax_cross_entropy(_ones(2, 3),
                                                                     np.array([0, 3])), (3,)),
    "label above class count": (lambda m: m.softmax_cross_entropy(_ones(2, 3),
                                                                  np.array([7, 0])), (7,)),
}


@IMPLS
@pytest.mark.parametrize("call, numbers", ERROR_CASES.values(), ids=ERROR_CASES.keys())
def test_invalid_input_raises_value_error_naming_the_numbers(impl, call, numbers):
    with pytest.raises(ValueError, match=_names(*numbers)):
        call(impl)


# conv_output_size lives in ``contract``, shared by both implementations: tested once, here.
@pytest.mark.parametrize("size, kernel, stride, pad, expected", [
    (5, 3, 1, 0, 3),  # (5 - 3) // 1 + 1
    (5, 3, 2, 1, 3),  # (5 + 2 - 3) // 2 + 1
    (6, 3, 2, 0, 2),  # (6 - 3) // 2 + 1 = 2.5 floored
    (1, 3, 1, 2, 3),  # padding wider than the image: (1 + 4 - 3) // 1 + 1
])
def test_conv_output_size_floors_the_formula(size, kernel, stride, pad, expected):
    assert contract.conv_output_size(size, kernel, stride, pad) == expected


def test_conv_output_size_below_1_raises_naming_the_numbers():
    # (2 + 2 - 5) // 1 + 1 = 0
    with pytest.raises(ValueError, match=_names(2, 5)):
        contract.conv_output_size(2, 5, 1, 1)


def _own_functions(module):
    """The public functions defined in ``module`` itself -> {name: parameter names}."""
    return {name: list(inspect.signature(f).parameters)
            for name, f in vars(module).items()
            if inspect.isfunction(f) and not name.startswith("_") and f.__module__ == module.__name__}


def test_both_implementations_define_the_same_functions_with_the_same_parameters():
    ours = _own_functions(fast.nn.layers)
    assert ours == _own_functions(reference.layers)
    assert {"conv2d_forward", "maxpool_relu_backward", "softmax_cross_entropy"} <= set(ours)


def test_the_implementations_share_only_the_contract_module():
    # Neither layer module imports the other: what they share is contract's checks alone.
    for module in (fast.nn.layers, reference.layers):
        imported = {v.__name__ for v in vars(module).values() if inspect.ismodule(v)}
        imported |= {v.__module__ for v in vars(module).values()
                     if inspect.isfunction(v) and v.__module__ != module.__name__}
        assert not {"fast.nn.layers", "reference.layers"} & imported
        assert imported <= {"contract", "fast.nn.kernels", "numpy", "math", "typing"}
