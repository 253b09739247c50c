"""One result family: a picture's, a plot's and a batch's results answer the same questions the same way."""

import pandas
import pytest

import jupyter_sd
from jupyter_sd.recipe.result import Outcome


@pytest.fixture(scope="module")
def results(tiny_model_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("family")
    common = {"model": str(tiny_model_dir), "steps": 2, "size": "16x16", "outdir": str(out)}
    picture = jupyter_sd.paint("a red circle", seed=1, n=2, view=jupyter_sd.engine.Progress(), **common)
    plot = jupyter_sd.plot("a red circle", x="Seed: 1, 2", view=None, **common)
    batch = jupyter_sd.batch(["a red circle", "a blue circle"], seed=3, **common)
    return {"picture": picture, "plot": plot, "batch": batch}


@pytest.mark.parametrize("kind", ["picture", "plot", "batch"])
def test_every_result_has_the_shared_face(results, kind):
    result = results[kind]
    assert isinstance(result, Outcome)
    assert len(result.images) == 2 and all(image.size == (16, 16) for image in result.images)
    assert len(result.paths) == 2 and all(path.is_file() for path in result.paths)
    assert result.stopped_by is None and result.interrupted is False
    table = result.table()
    assert isinstance(table, pandas.DataFrame) and len(table) == len(result.rows()) == 2


def test_the_table_is_the_rows_when_pandas_is_missing(results, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "pandas", None)  # `import pandas` now raises ImportError
    for result in results.values():
        assert result.table() == result.rows() and isinstance(result.rows(), list)


def test_a_pictures_rows_name_its_seeds_and_files(results):
    rows = results["picture"].rows()
    assert [row["seed"] for row in rows] == [1, 2]
    assert [row["path"] for row in rows] == [str(path) for path in results["picture"].paths]
    assert all(row["complete"] for row in rows)
