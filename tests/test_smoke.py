import envpack


def test_version_is_set() -> None:
    assert envpack.__version__.count(".") == 2
