"""fastbp.sklearn as a drop-in for scikit-learn's MLP estimators: the same
parameters and seed give the same network, in a Pipeline and a grid search.

    python examples/sklearn_estimators.py      # needs scikit-learn
"""

import os
import time
import warnings

from sklearn import neural_network
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import GridSearchCV, train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from fastbp.sklearn import MLPClassifier

TINY = os.environ.get("FASTBP_EXAMPLE_TINY") == "1"


def main() -> float:
    X, y = load_digits(return_X_y=True)
    if TINY:
        X, y = X[:400], y[:400]
    X_train, X_test, y_train, y_test = train_test_split(X, y, random_state=0)
    params = dict(hidden_layer_sizes=(32,) if TINY else (100,), max_iter=10 if TINY else 200,
                  random_state=0)
    warnings.simplefilter("ignore", ConvergenceWarning)
    for cls in (neural_network.MLPClassifier, MLPClassifier):
        t0 = time.perf_counter()
        est = cls(**params).fit(X_train, y_train)
        print(f"{cls.__module__}.{cls.__name__}: {time.perf_counter() - t0:.2f} s, "
              f"{est.n_iter_} epochs, test accuracy {est.score(X_test, y_test):.4f}")

    pipe = make_pipeline(StandardScaler(), MLPClassifier(max_iter=params["max_iter"], random_state=0))
    grid = GridSearchCV(pipe, {"mlpclassifier__alpha": [1e-4, 1e-2]}, cv=2).fit(X_train, y_train)
    score = float(grid.score(X_test, y_test))
    print(f"grid search: best {grid.best_params_}, test accuracy {score:.4f}")
    return score


if __name__ == "__main__":
    main()
