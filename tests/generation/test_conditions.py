"""The user's condition values: normalised with the training statistics a checkpoint stores."""

import pytest

from nag.errors import ConfigError, UnknownMetric
from nag.generation.conditions import Conditions


def test_conditions_normalise_with_the_training_statistics():
    stats = {"acc": {"mean": 90.0, "std": 2.0, "min": 80.0, "max": 94.0}, "lat": {"mean": 3.0, "std": 1.0}}
    asked = Conditions({"acc": [92.0, 94.0], "lat": 1.0})
    assert dict(asked) == {"acc": [92.0, 94.0], "lat": 1.0} and len(asked) == 2
    values, given = asked.normalize(["lat", "acc", "params"], stats, 2)
    assert given.tolist() == [True, True, False]
    assert values.tolist() == [[-2.0, 1.0, 0.0], [-2.0, 2.0, 0.0]]
    with pytest.raises(UnknownMetric, match="trained with conditions lat, acc"):
        Conditions({"flops": 1.0}).normalize(["lat", "acc"], stats, 1)
    with pytest.raises(ConfigError, match=r"outside the training range \[80, 94\]"):
        Conditions({"acc": 95.0}).normalize(["acc"], stats, 1)
    assert Conditions({"acc": 95.0}).normalize(["acc"], stats, 1, extrapolate=True)[0].item() == 2.5
    with pytest.raises(ConfigError, match="one finite value or 3"):
        Conditions({"acc": [90.0, 91.0]}).normalize(["acc"], stats, 3)
