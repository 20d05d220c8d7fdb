

def test_the_summary_says_where_an_unflagged_lr_sits_against_the_range():
    # an lr 6.6x below the range was summarised as lying in it (MNIST masks, SegNet, Adam 1e-3)
    from types import SimpleNamespace

    from dnncheck.checks.learning_rate import _where_lr_sits

    band = {"suggested_lr_min": 0.0066, "suggested_lr_max": 2.3}
    t = SimpleNamespace(low_factor=100.0)
    assert _where_lr_sits(0.001, band, t).startswith("lr 0.001 sits 6.6x below the suggested range [0.0066, 2.3]")
    assert "lies in" in _where_lr_sits(0.01, band, t)
    assert "above" in _where_lr_sits(5.0, band, t)
