import math

from emodistill.core.metrics import classification_metrics


def test_metrics_hand_computed():
    y = [0, 0, 0, 1, 2, 2]
    p = [0, 0, 1, 1, 2, 0]
    m = classification_metrics(y, p, 4)
    assert m["accuracy"] == 4 / 6 == m["war"]
    assert math.isclose(m["uar"], (2 / 3 + 1 + 1 / 2) / 3)
    # F1: class0 P=2/3 R=2/3 -> 2/3; class1 P=1/2 R=1 -> 2/3; class2 P=1 R=1/2 -> 2/3
    assert math.isclose(m["macro_f1"], 2 / 3)
    assert m["per_class_recall"][3] is None
    assert m["confusion"][2] == [1, 0, 1, 0]
